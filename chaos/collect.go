package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// ReadDeploy reads every deploy request and deploy result stored in the
// DEPLOY stream.
func ReadDeploy(ctx context.Context, js jetstream.JetStream) ([]RequestMsg, []ResultMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.StreamDeploy, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.PrefixDeployRequest + ">", events.PrefixDeployResult + ">"},
	})
	if err != nil {
		return nil, nil, err
	}
	var reqs []RequestMsg
	var res []ResultMsg
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, nil, err
		}
		n, last := 0, false
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
			last = meta.NumPending == 0
		}
		if err := batch.Error(); err != nil && err != jetstream.ErrNoMessages {
			return nil, nil, err
		}
		if n == 0 || last {
			return reqs, res, nil
		}
	}
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
