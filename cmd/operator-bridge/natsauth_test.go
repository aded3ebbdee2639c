package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/boreas/operator-bridge/events"
)

// natsAuthSetup is a nats-server that requires one way in, and the
// settings that get through it or not.
type natsAuthSetup struct {
	url     string
	env     map[string]string // serve's variables (without the prefix) that get in
	flags   []string          // the client flags that get in
	missing int               // exit code of a client command without them
	secrets []string          // what no output may ever contain
	bad     []badNATSAuth     // serve settings that must not get in
}

// badNATSAuth is a serve configuration the server must refuse.
type badNATSAuth struct {
	name string
	env  map[string]string
	code int
	want []string // in stderr
}

// TestServeWithNATSAuth runs serve and the client commands against a
// nats-server that requires a token, an nkey, a client certificate from a
// private CA, or a creds file (decentralized JWT auth): the right settings get
// in, wrong or missing ones fail at once with a clear error, and no secret is
// ever printed.
func TestServeWithNATSAuth(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", "- {id: env-a, name: A, type: k8s}\n")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) natsAuthSetup
	}{
		{"token", tokenAuth},
		{"nkey", nkeyAuth},
		{"tls client certificate", tlsAuth},
		{"creds", credsAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.setup(t)

			t.Run("right credentials", func(t *testing.T) {
				env := map[string]string{"NATS_URL": a.url, "USE_MOCK": "true", "ENVIRONMENTS_FILE": envFile}
				maps.Copy(env, a.env)
				s := startServe(t, env) // fails unless /readyz says 200

				// The client commands default to serve's variables...
				r := runCmd(t, "envs", "--json")
				wantCode(t, r, 0)
				var list []events.EnvironmentInfo
				if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != "env-a" {
					t.Fatalf("envs --json: %v %+v\n%s", err, list, r)
				}
				r = runCmd(t, "deploy", "--env", "env-a", "--app", "web", "--version", "v1", "--json")
				wantCode(t, r, 0)
				var res events.DeployResult
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Outcome != events.Succeeded || res.Version != "v1" {
					t.Fatalf("deploy --json: %v %+v\n%s", err, res, r)
				}
				noSecrets(t, "client output", r.stdout+r.stderr, a.secrets)

				// ... and take flags instead.
				for k := range a.env {
					t.Setenv(envPrefix+k, "")
				}
				r = runCmd(t, append([]string{"deploy", "--nats", a.url, "--env", "env-a", "--app", "web", "--version", "v2"}, a.flags...)...)
				wantCode(t, r, 0)
				wantContains(t, "deploy with flags", r.stdout, "succeeded", "env-a")
				r = runCmd(t, append([]string{"status", "--nats", a.url, "--env", "env-a", "--app", "web"}, a.flags...)...)
				wantCode(t, r, 0)
				wantContains(t, "status with flags", r.stdout, "v2", "100%")

				// Without them the server refuses the client.
				r = runCmd(t, "envs", "--nats", a.url)
				wantCode(t, r, a.missing)
				wantContains(t, "envs without credentials", r.stderr, "connect to NATS")
				noSecrets(t, "client output", r.stdout+r.stderr, a.secrets)

				noSecrets(t, "serve's log", s.stderr.String(), a.secrets)
			})

			for _, b := range a.bad {
				t.Run(b.name, func(t *testing.T) {
					clearEnv(t)
					httpAddr := testAddr(t)
					t.Setenv(envPrefix+"NATS_URL", a.url)
					t.Setenv(envPrefix+"HTTP_ADDR", httpAddr)
					t.Setenv(envPrefix+"USE_MOCK", "true")
					t.Setenv(envPrefix+"LOG_LEVEL", "debug")
					for k, v := range b.env {
						t.Setenv(envPrefix+k, v)
					}
					start := time.Now()
					r := runCmd(t, "serve")
					if d := time.Since(start); d > 10*time.Second {
						t.Errorf("serve took %s to fail", d)
					}
					wantCode(t, r, b.code)
					wantContains(t, "stderr", r.stderr, b.want...)
					noSecrets(t, "serve's output", r.stdout+r.stderr, a.secrets)
					if code, _ := httpGet("http://" + httpAddr + "/readyz"); code != 0 {
						t.Errorf("/readyz answers %d after serve failed", code)
					}
				})
			}
		})
	}
}

func noSecrets(t *testing.T, what, out string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s contains the secret %q:\n%s", what, s, out)
		}
	}
}

// startNATSServer runs a nats-server with JetStream on a free port until the
// test ends, with opts on top.
func startNATSServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir = "127.0.0.1", -1, true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func tokenAuth(t *testing.T) natsAuthSetup {
	const token, wrong = "s3cret-t0ken-4b1d", "wr0ng-t0ken-77e2"
	ns := startNATSServer(t, &server.Options{Authorization: token})
	refused := []string{"connect to NATS", "Authorization Violation"}
	return natsAuthSetup{
		url:     ns.ClientURL(),
		env:     map[string]string{"NATS_TOKEN": token},
		flags:   []string{"--token", token},
		missing: exitFailed,
		secrets: []string{token, wrong},
		bad: []badNATSAuth{
			{"wrong token", map[string]string{"NATS_TOKEN": wrong}, exitFailed, refused},
			{"no token", nil, exitFailed, refused},
		},
	}
}

// newNkeyUser returns the public key of a new nkey user and its seed.
func newNkeyUser(t *testing.T) (pub, seed string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return p, string(s)
}

func nkeyAuth(t *testing.T) natsAuthSetup {
	pub, seed := newNkeyUser(t)
	_, otherSeed := newNkeyUser(t) // a valid user the server does not know
	ns := startNATSServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	seedFile := writeFile(t, "bridge.nk", seed+"\n")
	otherFile := writeFile(t, "other.nk", otherSeed+"\n")
	notASeed := writeFile(t, "not-a-seed.nk", "hello\n")
	refused := []string{"connect to NATS", "Authorization Violation"}
	return natsAuthSetup{
		url:     ns.ClientURL(),
		env:     map[string]string{"NATS_NKEY": seedFile},
		flags:   []string{"--nkey", seedFile},
		missing: exitFailed,
		secrets: []string{seed, otherSeed},
		bad: []badNATSAuth{
			{"unknown nkey", map[string]string{"NATS_NKEY": otherFile}, exitFailed, refused},
			{"no nkey", nil, exitFailed, refused},
			{"seed file missing", map[string]string{"NATS_NKEY": seedFile + ".gone"}, exitUsage, []string{"nkey seed", "bridge.nk.gone"}},
			{"not a seed", map[string]string{"NATS_NKEY": notASeed}, exitUsage, []string{"nkey seed"}},
		},
	}
}

// testCA is a private certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of cert
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, name+".pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return testCA{cert: cert, key: key, file: file}
}

// issue writes a certificate for name signed by ca and its key; a server
// certificate is for 127.0.0.1. It returns the files and the key's PEM.
func (ca testCA) issue(t *testing.T, name string, serverCert bool) (certFile, keyFile, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if serverCert {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	certFile = writeFile(t, name+".pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, name+"-key.pem", keyPEM)
	return certFile, keyFile, keyPEM
}

// pemBody is the base64 of a PEM block: what would show if it leaked.
func pemBody(p string) string {
	lines := strings.Split(strings.TrimSpace(p), "\n")
	return strings.Join(lines[1:len(lines)-1], "")
}

func tlsAuth(t *testing.T) natsAuthSetup {
	ca := newTestCA(t, "bridge-ca")
	other := newTestCA(t, "other-ca") // a CA nobody here trusts
	srvCert, srvKey, _ := ca.issue(t, "nats-server", true)
	cert, key, keyPEM := ca.issue(t, "bridge", false)
	strayCert, strayKey, strayPEM := other.issue(t, "stray", false)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: ca.file, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns := startNATSServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc})
	url := "tls://" + ns.Addr().String()
	tlsEnv := func(caFile, cert, key string) map[string]string {
		return map[string]string{"NATS_TLS_CA": caFile, "NATS_TLS_CERT": cert, "NATS_TLS_KEY": key}
	}
	// With TLS 1.3 the client may see the server's refusal of its certificate
	// as "remote error: tls: certificate required" or, when its first write
	// loses the race with the server's alert, as "tls error: connection closed
	// by remote after TLS handshake": both name TLS.
	refused := []string{"connect to NATS", "tls"}
	// A failed TLS handshake exits 1 ("refused"), as a refused password does:
	// trying again will not help.
	return natsAuthSetup{
		url:     url,
		env:     tlsEnv(ca.file, cert, key),
		flags:   []string{"--tls-ca", ca.file, "--tls-cert", cert, "--tls-key", key},
		missing: exitFailed,
		secrets: []string{pemBody(keyPEM), pemBody(strayPEM)},
		bad: []badNATSAuth{
			{"no client certificate", map[string]string{"NATS_TLS_CA": ca.file}, exitFailed, refused},
			{"server from an untrusted CA", tlsEnv(other.file, cert, key), exitFailed,
				[]string{"connect to NATS", "certificate signed by unknown authority"}},
			{"client certificate from an untrusted CA", tlsEnv(ca.file, strayCert, strayKey), exitFailed, refused},
			{"no CA", tlsEnv("", cert, key), exitFailed,
				[]string{"connect to NATS", "certificate signed by unknown authority"}},
		},
	}
}

func credsAuth(t *testing.T) natsAuthSetup {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	operatorKP, err := nkeys.CreateOperator()
	must(err)
	operatorPub, err := operatorKP.PublicKey()
	must(err)
	resolver := &server.MemAccResolver{}
	// account returns the key pair of a new account signed by the operator,
	// with JetStream unless it is the system account; stored in the resolver
	// when known.
	account := func(name string, known bool) nkeys.KeyPair {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if name != "SYS" {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		accountJWT, err := ac.Encode(operatorKP)
		must(err)
		if known {
			must(resolver.Store(pub, accountJWT))
		}
		return kp
	}
	// creds writes the creds file of a new user of the account.
	creds := func(name string, accountKP nkeys.KeyPair) (file, seed string) {
		pub, seed := newNkeyUser(t)
		uc := jwt.NewUserClaims(pub)
		uc.Name = name
		userJWT, err := uc.Encode(accountKP)
		must(err)
		b, err := jwt.FormatUserConfig(userJWT, []byte(seed))
		must(err)
		return writeFile(t, name+".creds", string(b)), seed
	}
	bridgeCreds, seed := creds("bridge", account("BRIDGE", true))
	strayCreds, straySeed := creds("stray", account("UNKNOWN", false))

	// JetStream needs a system account.
	sysPub, err := account("SYS", true).PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(operatorPub)
	oc.Name = "test-operator"
	oc.SystemAccount = sysPub
	operatorJWT, err := oc.Encode(operatorKP)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(operatorJWT)
	must(err)

	ns := startNATSServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub})
	refused := []string{"connect to NATS", "Authorization Violation"}
	return natsAuthSetup{
		url:     ns.ClientURL(),
		env:     map[string]string{"NATS_CREDS": bridgeCreds},
		flags:   []string{"--creds", bridgeCreds},
		missing: exitFailed,
		secrets: []string{seed, straySeed},
		bad: []badNATSAuth{
			{"user of an unknown account", map[string]string{"NATS_CREDS": strayCreds}, exitFailed, refused},
			{"no creds", nil, exitFailed, refused},
			{"creds file missing", map[string]string{"NATS_CREDS": bridgeCreds + ".gone"}, exitUsage, []string{"nats credentials", "bridge.creds.gone"}},
		},
	}
}
