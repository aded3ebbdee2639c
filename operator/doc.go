// Package operator is the HTTP contract between the bridge and the
// deployment operators (docs/operators.md, docs/configuration.md): the clients of the Kubernetes and
// physical-machine operators, the in-process mock operator, the environments
// that map an environment ID to an operator, and the operator settings.
//
// # Pieces
//
//   - Operator is what every operator does: Apply, Status, HealthCheck, Kind.
//   - Client is the one HTTP client of both HTTP operators; they differ only
//     in their routes (RoutesFor): kubernetes (k8s) POST /api/apply,
//     GET /api/status/{app}, GET /health; physical (pm) POST /api/deploy,
//     GET /api/app/{app}, GET /health. Each call is bounded by ClientOptions.Timeout (OPERATOR_TIMEOUT),
//     derived from the caller's context, carries the bearer token
//     (OPERATOR_TOKEN, health checks included) and the User-Agent
//     "operator-bridge/<Version>", path-escapes {app}, and reads at most
//     ClientOptions.MaxBodyBytes of an answer. HTTPS operators may be trusted
//     through a CA file (OPERATOR_TLS_CA, LoadCAFile).
//   - MockClient is the in-process operator used with USE_MOCK and for
//     demos: it remembers the last apply of each app and can be told to fail.
//   - Error is every failure of a call, with a Reason (Rejected,
//     InvalidResponse, Unavailable, Timeout, Stale) that says whether it is
//     Retryable and maps to the contract's error code (Reason.Code). No
//     answer makes a client panic; endpoints in errors carry no credentials.
//     When an operator cannot be asked, DegradedStatus is what to report.
//   - Environment is an environment record; ParseEnvironments and
//     LoadEnvironmentsFile read a YAML or JSON file of them, ParseEnvironment
//     one key-value bucket entry. Their errors (EnvironmentError) name the
//     file, the entry and the field.
//   - Settings are read from OPERATOR_BRIDGE_* variables by LoadSettings,
//     which also accepts the original MASTER_OPERATOR_K8S_OPERATOR_URL,
//     MASTER_OPERATOR_PM_OPERATOR_URL and MASTER_OPERATOR_USE_MOCK.
//   - Factory makes each environment's operator (New, which the original
//     operator client called CreateOperatorFromEnvironment; NewByType, its
//     CreateOperatorByType) and a whole Manager (Build, its
//     InitializeOperators). It keeps one Client per kind and endpoint,
//     shared by every environment there (the endpoints on one host share a
//     pool of keep-alive connections), and one MockClient per environment.
//     USE_MOCK is applied there and nowhere else.
//   - Manager maps environment IDs to entries for the bridge: Lookup never
//     waits (an atomic pointer to an immutable table, sorted by ID and
//     indexed); Replace swaps the whole set when the environments change,
//     Take swaps in one a Factory built, All walks it without a copy,
//     RegisterOperator copies it to change one. CheckHealth checks every active environment's operator once per
//     endpoint, for the bridge's periodic health events.
//   - Metrics: an Observer (ClientOptions.Observer, WithObserver) is told
//     about every call with its duration, HTTP status and error. The package
//     never logs; it returns errors.
//   - Fake operators over real HTTP, for tests, are in the operatortest
//     package below this one.
//
// # Fencing
//
// Every apply carries, besides its JSON body, three headers taken from the
// ApplyRequest fields that are not in the body:
//
//   - Boreas-Request-Id (RequestID): the id of the deploy request applied;
//   - Boreas-Request-Time (RequestTime): the request's order time, RFC 3339
//     with nanoseconds, UTC, e.g. 2026-01-02T15:04:05.123456789Z;
//   - Boreas-Fence (Fence): a decimal integer, per environment and app, that
//     strictly grows from one request to the next, across replicas and
//     restarts; retries of one request repeat it.
//
// A header whose field is zero is not sent. An operator that supports
// fencing answers 409 Conflict to an apply whose Boreas-Fence is lower than
// the highest it accepted for that app, so an apply that left before a pause
// and arrives after a newer one cannot move the app back. The Client reports
// that as a *Error with Reason Stale (not retryable, code "superseded") whose
// Message says the operator refused the apply as stale, with the operator's
// own message when it gave one. Operators that ignore the headers keep
// working as before. MockClient, and operatortest's fake operators with
// SetFencing(true), support fencing; ParseFencing reads the headers.
//
// # Adding an operator type
//
// An operator type that speaks the same JSON over other routes is one row:
// add a Kind constant and a kindSpec to the kinds table in kind.go, with its
// aliases, its Routes and the Settings field holding its default URL (add
// that field, with its envconfig tag, to Settings). ParseKind, environment
// files, the Factory, the Client and operatortest then know it:
//
//	const Nomad Kind = "nomad"
//
//	{
//		kind:       Nomad,
//		aliases:    []string{"nmd"},
//		routes:     &Routes{Apply: "/v1/apply", Status: "/v1/apps/", Health: "/v1/health"},
//		defaultURL: func(s Settings) string { return s.NomadOperatorURL },
//	},
//
// An operator that speaks something else implements Operator in its own
// file (a type with Apply, Status, HealthCheck and Kind returning *Error on
// failure) and gets a case in Factory.Entry next to the mock's.
package operator
