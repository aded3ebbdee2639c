package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// ReadDeploy reads every deploy request and deploy result stored in the
// DEPLOY stream, through a consumer of its own that it deletes afterwards
// (streams allow 1,000 consumers by default).
func ReadDeploy(ctx context.Context, js jetstream.JetStream) ([]RequestMsg, []ResultMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cons, err := js.CreateConsumer(ctx, events.StreamDeploy, jetstream.ConsumerConfig{
		Description:       "chaos: read back the history",
		FilterSubjects:    []string{events.PrefixDeployRequest + ">", events.PrefixDeployResult + ">"},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		js.DeleteConsumer(dctx, events.StreamDeploy, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	var reqs []RequestMsg
	var res []ResultMsg
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, nil, err
			}
			if strings.HasPrefix(m.Subject(), events.PrefixDeployRequest) {
				reqs = append(reqs, requestOf(m, meta))
			} else {
				res = append(res, resultOf(m, meta))
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return nil, nil, err
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("%d messages to read did not come", pending)
		}
	}
	return reqs, res, nil
}

func requestOf(m jetstream.Msg, meta *jetstream.MsgMetadata) RequestMsg {
	env, req, _ := events.DecodeDeployRequest(m.Subject(), m.Headers(), m.Data())
	return RequestMsg{Seq: meta.Sequence.Stream, ID: env.ID, Env: env.Environment, App: req.App, Version: req.Version, Time: env.Time, Stored: meta.Timestamp}
}

func resultOf(m jetstream.Msg, meta *jetstream.MsgMetadata) ResultMsg {
	r := ResultMsg{Seq: meta.Sequence.Stream, Stored: meta.Timestamp}
	r.Env, _ = events.EnvironmentFromSubject(m.Subject())
	e, data, err := events.DecodeDeployResult(m.Headers(), m.Data())
	r.ID, r.Source = e.ID(), e.Source()
	if v, ok := e.Extensions()[events.ExtRequestID].(string); ok {
		r.RequestID = v
	}
	if err != nil {
		r.Message = fmt.Sprintf("undecodable result: %v", err)
		return r
	}
	r.Outcome, r.Message = string(data.Outcome), data.Message
	if data.Error != nil {
		r.ErrorCode = string(data.Error.Code)
	}
	return r
}

// Applies returns the apply calls the fake operator of env received.
func Applies(env string, srv *operatortest.Server) []Apply {
	routes, _ := operator.RoutesFor(srv.Kind)
	var out []Apply
	for _, r := range srv.Requests() {
		if r.Method != http.MethodPost || r.Path != routes.Apply {
			continue
		}
		var body operator.ApplyRequest
		json.Unmarshal(r.Body, &body)
		out = append(out, Apply{
			Env: env, App: body.App, Version: body.Version,
			RequestID: r.RequestID, RequestTime: r.RequestTime, Fence: r.Fence,
			Arrived: r.Time, Decided: r.Decided, Accepted: r.Accepted, Status: r.StatusCode,
		})
	}
	return out
}
