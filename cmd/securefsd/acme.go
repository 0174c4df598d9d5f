package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACME (issue 22): the WebDAV and web listener's certificate from an ACME
// CA (Let's Encrypt by default), kept under DATA-DIR/acme and renewed
// before it expires, with x/crypto/acme/autocert. Validation is by
// TLS-ALPN-01 on the WebDAV port itself, or HTTP-01 with --acme-http-addr
// (port 80 for a public CA). A connection for any other name (an IP
// address, localhost) keeps getting the self-signed or --tls-cert
// certificate, so local access works while the public name gets the CA's.
var acmeFlags = []cli.Flag{
	altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "acme-domain", Usage: "get the HTTPS certificate for this name by ACME (repeat or comma-separate for more names); off when empty", EnvVars: []string{"SECUREFSD_ACME_DOMAIN"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "acme-email", Usage: "contact address given to the ACME CA (expiry notices)", EnvVars: []string{"SECUREFSD_ACME_EMAIL"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "acme-ca", Value: acme.LetsEncryptURL, Usage: "the ACME CA's directory URL", EnvVars: []string{"SECUREFSD_ACME_CA"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "acme-ca-root", Usage: "PEM file of extra roots trusted for the ACME CA's own HTTPS (a private or test CA)", EnvVars: []string{"SECUREFSD_ACME_CA_ROOT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "acme-http-addr", Usage: "also answer HTTP-01 challenges on this address (e.g. :80); other requests there are redirected to https", EnvVars: []string{"SECUREFSD_ACME_HTTP_ADDR"}}),
}

// acmeRenewBefore: renew 30 days before expiry (autocert's default, said
// here because the docs promise it).
const acmeRenewBefore = 30 * 24 * time.Hour

// acmeTLS returns the listener's TLS config for --acme-domain (nil when
// not set): the CA's certificate for those names, fallback for the rest.
func acmeTLS(c *cli.Context, g *group, dir string, fallback tls.Certificate, log *slog.Logger) (*tls.Config, error) {
	var domains []string
	for _, d := range c.StringSlice("acme-domain") {
		for _, p := range strings.Split(d, ",") {
			if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
				domains = append(domains, p)
			}
		}
	}
	if len(domains) == 0 {
		return nil, nil
	}
	cacheDir := filepath.Join(dir, "acme")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, err
	}
	client := &acme.Client{DirectoryURL: c.String("acme-ca"), UserAgent: "securefsd"}
	if root := c.String("acme-ca-root"); root != "" {
		pem, err := os.ReadFile(root)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--acme-ca-root %s: no certificate in it", root)
		}
		client.HTTPClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	m := &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(cacheDir),
		HostPolicy:  autocert.HostWhitelist(domains...),
		Email:       c.String("acme-email"),
		Client:      client,
		RenewBefore: acmeRenewBefore,
	}
	if addr := c.String("acme-http-addr"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("acme http listen: %w", err)
		}
		srv := &http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
		g.run(func(context.Context) error { return srv.Serve(ln) }, srv.Shutdown)
		log.Info("acme http-01 listener", "addr", ln.Addr().String())
	}
	cfg := m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
		if !slices.Contains(domains, name) && !slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
			return &fallback, nil
		}
		cert, err := m.GetCertificate(hello)
		if err != nil {
			log.Error("acme certificate", "domain", name, "err", err)
			if errors.Is(err, context.Canceled) {
				return nil, err
			}
		}
		return cert, err
	}
	log.Info("acme", "domains", domains, "ca", client.DirectoryURL, "cache", cacheDir)
	return cfg, nil
}
