package testutil

import (
	"net/http"
	"os"
	"testing"
)

// TestStartS3: the gateway answers S3 (an unsigned request is refused
// with an S3 error, not served), its bucket is a folder of Dir; stopped,
// its port refuses connections; started again, it answers on the same
// endpoint.
func TestStartS3(t *testing.T) {
	s := StartS3(t, "b")
	if st, err := os.Stat(s.ObjectPath("b", "")); err != nil || !st.IsDir() {
		t.Fatalf("bucket folder: %v", err)
	}
	get := func() (int, error) {
		resp, err := http.Get(s.Endpoint + "/b/")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	refused := func(code int) bool { return code == http.StatusBadRequest || code == http.StatusForbidden }
	if code, err := get(); err != nil || !refused(code) {
		t.Fatalf("anonymous listing: %d %v, want 400 or 403\n%s", code, err, s.Log())
	}
	s.Stop()
	if _, err := get(); err == nil {
		t.Fatal("stopped server answered")
	}
	s.Start()
	if code, err := get(); err != nil || !refused(code) {
		t.Fatalf("after restart: %d %v, want 400 or 403\n%s", code, err, s.Log())
	}
}
