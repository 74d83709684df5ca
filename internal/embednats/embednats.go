package embednats

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/natsconn"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// Listen makes the server accept TCP clients on a random 127.0.0.1 port (so other
	// processes, e.g. `jml` subcommands, can connect). Without it the server is
	// reachable in-process only. A listening server requires a user and password
	// generated at start; ClientURL carries them.
	Listen bool
	// Port fixes the loopback port when Listen is set (0 = random).
	Port int
	// ServerName defaults to "jml".
	ServerName string
}

// Server is a running embedded nats-server.
type Server struct {
	ns *server.Server
	// user and password are required from every client when the server
	// listens ("" otherwise).
	user, password string
}

// clientUser is the user name of the generated credentials.
const clientUser = "jml"

// Start starts the server and waits until it accepts connections with JetStream on.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embednats: StoreDir is required")
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("embednats: %w", err)
	}
	name := o.ServerName
	if name == "" {
		name = "jml"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   filepath.Clean(o.StoreDir),
		NoLog:      true,
		NoSigs:     true, // otherwise the server calls os.Exit on SIGINT/SIGTERM
		MaxPayload: 8 << 20,
	}
	if o.Port > 0 {
		opts.Port = o.Port
	}
	s := &Server{}
	if o.Listen {
		pw, err := randomSecret()
		if err != nil {
			return nil, fmt.Errorf("embednats: credentials: %w", err)
		}
		s.user, s.password = clientUser, pw
		opts.Username, opts.Password = s.user, s.password
	} else {
		opts.DontListen = true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embednats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(15*time.Second) || !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, errors.New("embednats: server did not become ready with JetStream (is the store dir writable and not used by another process?)")
	}
	s.ns = ns
	return s, nil
}

// randomSecret is 32 random bytes, hex encoded (URL safe).
func randomSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ClientURL is the nats:// URL of the loopback listener with its credentials
// (nats://jml:<password>@127.0.0.1:<port>), "" when not listening. It is a
// secret: store it with mode 0600 and never log it (see RedactedURL).
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	u, err := url.Parse(s.ns.ClientURL())
	if err != nil {
		return ""
	}
	if s.user != "" {
		u.User = url.UserPassword(s.user, s.password)
	}
	return u.String()
}

// RedactedURL is ClientURL without the credentials, for banners and status.
func (s *Server) RedactedURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Connect opens an in-process client connection (with the server's
// credentials when it requires them) with the daemon's connection options
// (natsconn: reconnect forever with backoff; pass natsconn.Options with a
// logger among extra to log its events). Extra options are appended.
func (s *Server) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(s.ns)}, natsconn.Options(natsconn.Config{Name: name})...)
	if s.user != "" {
		opts = append(opts, nats.UserInfo(s.user, s.password))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect("nats://in-process", opts...)
	if err != nil {
		return nil, fmt.Errorf("embednats: connect: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits for it. Close client connections first.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// NATS exposes the underlying server for tests that need to stop or inspect it.
func (s *Server) NATS() *server.Server { return s.ns }
