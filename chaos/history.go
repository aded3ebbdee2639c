package chaos

import "time"

// RequestMsg is one deploy request message as stored in the DEPLOY stream.
// A request id may be stored more than once (a replay); each message is
// owed a result of its own.
type RequestMsg struct {
	Seq     uint64    // stream sequence
	ID      string    // CloudEvent id
	Env     string    // environment
	App     string    // app
	Version string    // version
	Time    time.Time // CloudEvent time: the request's order
	Stored  time.Time // when JetStream stored it
}

// Key is the request's order key, environment and app.
func (r RequestMsg) Key() Key { return Key{r.Env, r.App} }

// Key is an environment and an app: what the bridge orders by.
type Key struct{ Env, App string }

func (k Key) String() string { return k.Env + "/" + k.App }

// ResultMsg is one deploy result as stored in the DEPLOY stream.
type ResultMsg struct {
	Seq       uint64    // stream sequence
	ID        string    // CloudEvent id
	RequestID string    // the requestid extension
	Env       string    // environment (from the subject)
	Source    string    // CloudEvent source: the replica that published it
	Stored    time.Time // when JetStream stored it
	Outcome   string    // succeeded, failed, rejected, superseded
	Message   string    // the result's message
	ErrorCode string    // error.code, "" on success
}

// Apply is one apply call a fake operator received.
type Apply struct {
	Env         string    // the environment whose operator received it
	App         string    // from the body
	Version     string    // from the body
	RequestID   string    // Boreas-Request-Id, "" when not sent
	RequestTime time.Time // Boreas-Request-Time, zero when not sent
	Fence       uint64    // Boreas-Fence, 0 when not sent
	Arrived     time.Time // when it arrived
	Decided     time.Time // when the operator applied or refused it; zero if never
	Accepted    bool      // the operator applied it
	Status      int       // HTTP status answered, 0 when none
}

// Key is the apply's order key.
func (a Apply) Key() Key { return Key{a.Env, a.App} }

// FaultWindow is one fault injected during the run.
type FaultWindow struct {
	Kind   string // one of FaultKinds
	Target string // which replica, node or environment, in words
	// Replica and Env name the replica or the environment a fault hit, ""
	// when it hit all (a NATS node); recovery is measured on their results.
	Replica string
	Env     string
	Start   time.Time // when it was injected
	End     time.Time // when it was healed
}

// Phase is a stretch of the run: one fault alone, or faults mixed.
type Phase struct {
	Name  string
	Start time.Time
	End   time.Time
}

// ConsumerState is the deploy consumer's state once the run settled.
type ConsumerState struct {
	Read          bool // false when it could not be read
	NumAckPending int
	NumPending    uint64
	// StreamConsumers is how many consumers the DEPLOY stream had (the
	// server refuses new ones past 1,000 by default).
	StreamConsumers int
}

// Shutdown is how a replica ended at the end of the run.
type Shutdown struct {
	Replica string
	Took    time.Duration
	InGrace bool // it exited on SIGTERM within the grace
}

// History is everything the checker looks at.
type History struct {
	Seed     int64
	Requests []RequestMsg
	Results  []ResultMsg
	Applies  []Apply
	Faults   []FaultWindow
	Phases   []Phase
	Consumer ConsumerState
	// Settled says whether, once the load stopped and the faults were
	// healed, every request got its result and the consumer drained, within
	// the retry window and slack; SettleTook is how long the wait was.
	Settled     bool
	SettleTook  time.Duration
	Shutdowns   []Shutdown
	RetryWindow time.Duration // the bridge's RETRY_WINDOW
	Slack       time.Duration // allowed on top of the retry window
}
