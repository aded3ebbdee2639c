package events

// For the tests of package events_test, which may import packages that
// import this one (bench/mix).
var (
	FastDeployRequest = fastDeployRequest
	FullDeployRequest = decodeDeployRequest
	FastStatusQuery   = fastStatusQuery
	FullStatusQuery   = decodeStatusQuery
)
