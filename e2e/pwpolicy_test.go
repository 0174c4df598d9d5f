package e2e

import (
	"strings"
	"testing"
)

// TestPasswordPolicyCLI: `user add` and `user passwd` refuse weak
// passwords, through the running server (its --password-policy) and
// offline (the default policy), and a refused password never reaches the
// server log.
func TestPasswordPolicyCLI(t *testing.T) {
	srv := StartServer(t, WithServeArgs("--password-policy", "min-length=16"))
	for _, pw := range []string{"tiny", "fifteen-chars-x", "my-name-is-pat-ok"} {
		_, err := srv.CLIInput(t, pw+"\n", "user", "add", "pat", "--password-stdin")
		if err == nil || !strings.Contains(err.Error(), "password policy") {
			t.Fatalf("user add with %q: %v, want a policy refusal", pw, err)
		}
	}
	// Long, and only containing a common password: accepted.
	srv.AddUser(t, "lee", "1qaz2wsx3edc-but-no")
	srv.AddUser(t, "pat", "sixteen-chars-ok")
	if _, err := srv.CLIInput(t, "short-password\n", "user", "passwd", "pat", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("passwd with 14 characters under min-length=16: %v", err)
	}
	if strings.Contains(srv.Log(), "fifteen-chars-x") || strings.Contains(srv.Log(), "short-password") {
		t.Fatal("a refused password is in the server log")
	}

	// Offline: the default policy (12 characters, common list, name).
	srv.Stop(t)
	for _, pw := range []string{"eleven-char", "1qaz2wsx3edc", "quinn-secret-pw"} {
		if _, err := srv.CLIInput(t, pw+"\n", "user", "add", "quinn", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "password policy") {
			t.Fatalf("offline user add with %q: %v, want a policy refusal", pw, err)
		}
	}
	if _, err := srv.CLIInput(t, "twelve-chars\n", "user", "add", "quinn", "--password-stdin"); err != nil {
		t.Fatalf("offline user add with a good password: %v", err)
	}
}
