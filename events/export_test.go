package events

// For the tests of package events_test, which may import packages that
// import this one (bench/mix).
var (
	FastDeployRequest    = fastDeployRequest
	DecodeDeployRequest0 = decodeDeployRequest
	FastStatusQuery      = fastStatusQuery
	DecodeStatusQuery0   = decodeStatusQuery
)
