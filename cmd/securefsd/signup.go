package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
	"github.com/securefsd/securefsd/internal/webui"
)

// The sign-up flags (issue 18); serveFlags lists them.
var (
	signupFlag      = altsrc.NewStringFlag(&cli.StringFlag{Name: "signup", Value: "off", Usage: "who may create an account on /ui/signup: off, invite (with a link from `securefsd invite create`) or open (anyone, rate limited per address)", EnvVars: []string{"SECUREFSD_SIGNUP"}})
	signupPermsFlag = altsrc.NewStringFlag(&cli.StringFlag{Name: "signup-perms", Value: "all", Usage: "rights of an account made by open sign-up (comma-separated, as user add --perms)", EnvVars: []string{"SECUREFSD_SIGNUP_PERMS"}})
	signupQuotaFlag = altsrc.NewStringFlag(&cli.StringFlag{Name: "signup-quota", Value: "1G", Usage: "byte quota of an account made by open sign-up (0: none)", EnvVars: []string{"SECUREFSD_SIGNUP_QUOTA"}})
)

// enableAccounts turns on the sign-up page (per --signup) and the admin
// page of the web client. Both run the management operations of a Local
// over the server's own database and store, with the server's password
// policy.
func enableAccounts(c *cli.Context, ui *webui.UI, core serverCore) error {
	mode, err := webui.ParseSignupMode(c.String("signup"))
	if err != nil {
		return fmt.Errorf("--signup: %w", err)
	}
	perms, err := users.ParsePerm(c.String("signup-perms"))
	if err != nil {
		return fmt.Errorf("--signup-perms: %w", err)
	}
	quota, err := parseSize(c.String("signup-quota"))
	if err != nil {
		return fmt.Errorf("--signup-quota: %w", err)
	}
	local := admin.NewLocal(core.users, core.store, core.keyFile, filepath.Join(core.dir, keyCheckFileName), core.keyring)
	local.UsersKey = filepath.Join(core.dir, usersKeyFileName)
	if local.Store.StorageVersion() == vfs.StorageV2 {
		local.IndexKey = filepath.Join(core.dir, indexKeyFileName)
	}
	local.Policy = &core.policy
	local.Sessions = []admin.SessionSource{core.sessions}
	var m webui.Accounts = local
	if core.audit != nil {
		local.AuditDir = core.audDir
		am, ok := admin.Audited(local, core.audit).(webui.Accounts)
		if !ok {
			return fmt.Errorf("webui: the audited manager lacks the admin page's operations")
		}
		m = am
	}
	if mode == webui.SignupOpen {
		core.log.Warn("open sign-up: anyone who reaches /ui/signup can create an account", "perms", perms.String(), "quota", quota)
	}
	opts := webui.AccountsOptions{Accounts: m, Signup: mode, SignupPerms: perms, SignupQuota: quota}
	if core.audit != nil {
		opts.Trail = core.audit
	}
	return webui.EnableAccounts(ui, opts)
}
