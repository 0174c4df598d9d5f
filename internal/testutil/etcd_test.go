package testutil

import (
	"net/http"
	"testing"
	"time"
)

// TestStartEtcd: three members answer; a stopped one no longer does and
// answers again after its restart, with the others serving throughout.
func TestStartEtcd(t *testing.T) {
	c := StartEtcd(t, 3)
	eps := c.Endpoints()
	if len(eps) != 3 {
		t.Fatalf("%d endpoints", len(eps))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	c.Stop(1)
	if resp, err := client.Get(eps[1] + "/health"); err == nil {
		resp.Body.Close()
		t.Error("a stopped member still answers")
	}
	c.waitHealthy(0)
	c.waitHealthy(2)
	c.Restart(1)
}
