package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsersDatabaseSealed (issue 20): users.db holds no user, folder or
// group name and no SSH key comment; its key file is wrapped by the
// keyring and re-wrapped by key rotate; the server restarts on it and the
// users log in as before.
func TestUsersDatabaseSealed(t *testing.T) {
	const marker = "zq7marker"
	srv := StartServer(t)
	key := srv.AddUser(t, marker+"-alice", "a-long-"+marker+"-pass", "--quota", "5G")
	if _, err := srv.CLI(t, "folder", "add", marker+"-case"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(t, "group", "add", marker+"-staff"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(t, "group", "members", marker+"-staff", "--add", marker+"-alice"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"users.db", "users.key"} {
			b, err := os.ReadFile(filepath.Join(srv.DataDir, name))
			if err != nil {
				t.Fatal(err)
			}
			// The key comment ssh-keygen wrote ("e2e") and the marker.
			for _, secret := range []string{marker, " e2e"} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s: %s holds %q in the clear", when, name, secret)
				}
			}
		}
	}
	check("serving")
	if out, err := srv.CLI(t, "key", "rotate"); err != nil {
		t.Fatalf("key rotate: %v\n%s", err, out)
	}
	srv.Restart(t)
	check("after rotation and restart")
	out, err := srv.SFTPBatch(t, marker+"-alice", key, "ls /\n")
	if err != nil {
		t.Fatalf("login after rotation and restart: %v\n%s", err, out)
	}
	if list, err := srv.CLI(t, "user", "list"); err != nil || !strings.Contains(list, marker+"-alice") {
		t.Errorf("user list: %v\n%s", err, list)
	}
}
