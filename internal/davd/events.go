package davd

// The stable "event" attribute of log lines tests and alerts match on
// (messages may be reworded, events stay).
const (
	eventIntegrity  = "integrity_failure" // a file failed authentication while being sent
	eventHashBudget = "hash_budget"       // PROPFIND left checksums out (per-request hashing budget)
)
