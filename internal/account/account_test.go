package account

import (
	"testing"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

func TestOptions(t *testing.T) {
	u := users.User{Name: "alice", Perms: users.PermReadOnly | users.PermChmod, QuotaBytes: 10, QuotaFiles: 3}
	got := Options(u)
	want := vfs.HomeOptions{Quota: vfs.Quota{Bytes: 10, Files: 3}, Perm: vfs.PermList | vfs.PermDownload | vfs.PermChmod}
	if got != want {
		t.Errorf("Options = %+v, want %+v", got, want)
	}
	if Dir(u) != "alice" {
		t.Errorf("Dir without Home = %q", Dir(u))
	}
	u.Home = "h"
	if Dir(u) != "h" {
		t.Errorf("Dir = %q", Dir(u))
	}
	// Every right reaches the FS unchanged: the two names are one type.
	for bit := users.Perm(1); bit <= users.PermChmod; bit <<= 1 {
		if Options(users.User{Perms: bit}).Perm != bit {
			t.Errorf("right %v changed on the way to vfs", bit)
		}
	}
}
