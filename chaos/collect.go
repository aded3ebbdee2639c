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
// DEPLOY stream, through a consumer of its own that it deletes afterwards;
// when the stream takes no new consumer (it allows 1,000 by default), it
// reads message by message instead.
func ReadDeploy(ctx context.Context, js jetstream.JetStream) ([]RequestMsg, []ResultMsg, []ProgressMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var h history
	cons, err := js.CreateConsumer(ctx, events.StreamDeploy, jetstream.ConsumerConfig{
		Description:       "chaos: read back the history",
		FilterSubjects:    []string{events.PrefixDeployRequest + ">", events.PrefixDeployResult + ">", events.PrefixDeployProgress + ">"},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil { // the limit of consumers, say
		if err := h.readEach(ctx, js); err != nil {
			return nil, nil, nil, err
		}
		return h.reqs, h.res, h.progress, nil
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		js.DeleteConsumer(dctx, events.StreamDeploy, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, nil, nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, nil, nil, err
			}
			h.add(m.Subject(), m.Headers(), m.Data(), meta.Sequence.Stream, meta.Timestamp)
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return nil, nil, nil, err
		}
		if n == 0 {
			return nil, nil, nil, fmt.Errorf("%d messages to read did not come", pending)
		}
	}
	return h.reqs, h.res, h.progress, nil
}

// history collects what ReadDeploy reads.
type history struct {
	reqs     []RequestMsg
	res      []ResultMsg
	progress []ProgressMsg
}

// readEach reads the stream one message at a time, without a consumer.
func (h *history) readEach(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, events.StreamDeploy)
	if err != nil {
		return err
	}
	st := s.CachedInfo().State
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("message %d: %w", seq, err)
		}
		if strings.HasPrefix(m.Subject, events.PrefixDeployRequest) || strings.HasPrefix(m.Subject, events.PrefixDeployResult) || strings.HasPrefix(m.Subject, events.PrefixDeployProgress) {
			h.add(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
		}
	}
	return nil
}

// add decodes one stored request, result or progress event.
func (h *history) add(subject string, hdr nats.Header, data []byte, seq uint64, stored time.Time) {
	if strings.HasPrefix(subject, events.PrefixDeployProgress) {
		p := ProgressMsg{Seq: seq, Stored: stored}
		p.Env, _ = events.EnvironmentFromSubject(subject)
		e, data, _ := events.DecodeDeployProgress(hdr, data)
		p.ID = e.ID()
		if v, ok := e.Extensions()[events.ExtRequestID].(string); ok {
			p.RequestID = v
		}
		if p.RequestID == "" {
			p.RequestID = data.RequestID
		}
		p.Phase, p.Final = string(data.Phase), data.Final
		h.progress = append(h.progress, p)
		return
	}
	if strings.HasPrefix(subject, events.PrefixDeployRequest) {
		env, req, _ := events.DecodeDeployRequest(subject, hdr, data)
		h.reqs = append(h.reqs, RequestMsg{Seq: seq, ID: env.ID, Env: env.Environment, App: req.App, Version: req.Version, Time: env.Time, Stored: stored})
		return
	}
	r := ResultMsg{Seq: seq, Stored: stored}
	r.Env, _ = events.EnvironmentFromSubject(subject)
	e, res, err := events.DecodeDeployResult(hdr, data)
	r.ID, r.Source = e.ID(), e.Source()
	if v, ok := e.Extensions()[events.ExtRequestID].(string); ok {
		r.RequestID = v
	}
	if err != nil {
		r.Message = fmt.Sprintf("undecodable result: %v", err)
	} else {
		r.Outcome, r.Message = string(res.Outcome), res.Message
		if res.Error != nil {
			r.ErrorCode = string(res.Error.Code)
		}
	}
	h.res = append(h.res, r)
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
