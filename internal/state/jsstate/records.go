package jsstate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Names of the JetStream assets. They are part of the operator contract
// (README): change them only with a migration. A KV bucket B is stored in the
// stream KV_B.
const (
	// BucketLinks maps (source, source id) to a person key: key
	// "<b64url(source)>.<b64url(source id)>".
	BucketLinks = "JML_LINKS"
	// BucketSnapshots holds access snapshots, key b64url(person key), the
	// last SnapshotHistory kept per person.
	BucketSnapshots = "JML_SNAPSHOTS"
	// BucketDue holds future-dated changes, key
	// "<b64url(person key)>.<b64url(field)>".
	BucketDue = "JML_DUE"
	// BucketRuns holds reconcile runs and halted plans, key b64url(run id).
	BucketRuns = "JML_RUNS"
	// StreamEvidence is the hash-chained evidence log, one subject per
	// person: EvidenceSubjectPrefix + ".<first 32 hex of sha256(person key)>",
	// or ".org" for records about no person.
	StreamEvidence        = "JML_EVIDENCE"
	EvidenceSubjectPrefix = "jml.evidence"
	// StreamAnchors holds the signed anchors of the evidence chain, on the
	// subject AnchorSubject.
	StreamAnchors = "JML_EVIDENCE_ANCHORS"
	AnchorSubject = "jml.anchors"
)

// SnapshotHistory is how many snapshots per person JML_SNAPSHOTS keeps.
const SnapshotHistory = 16

// Options size the buckets and streams. Zero values are usable.
type Options struct {
	Replicas int // 1 (all-in-one) or 3 (cluster)
	Memory   bool
	Now      func() time.Time
	// DueClaim is how long a popped due change stays claimed by its popper
	// before it is handed out again (default 1 minute).
	DueClaim time.Duration
	// RunRetention is how long reconcile runs are kept (default 90 days).
	RunRetention time.Duration
	// EvidenceMaxAge limits how long evidence is kept (default 0: forever).
	EvidenceMaxAge time.Duration
	// MaxClockSkew is how far ahead of Now a stored version may be: the
	// directory reads versions beyond it clamped (state.ClampFuture), and
	// writes them clamped (default events.DefaultMaxClockSkew).
	MaxClockSkew time.Duration
}

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DueClaim <= 0 {
		o.DueClaim = time.Minute
	}
	if o.RunRetention <= 0 {
		o.RunRetention = 90 * 24 * time.Hour
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = events.DefaultMaxClockSkew
	}
	return o
}

func (o Options) storage() jetstream.StorageType {
	if o.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Records holds every JetStream-backed record store. Open creates them.
type Records struct {
	Directory *Directory
	Snapshots *Snapshots
	Evidence  *EvidenceLog
	Anchors   *AnchorLog
	Due       *DueQueue
	Runs      *Runs
}

// Open creates (or opens, idempotently) every bucket and stream of the record
// stores: JML_DIRECTORY, JML_LINKS, JML_SNAPSHOTS, JML_EVIDENCE,
// JML_EVIDENCE_ANCHORS, JML_DUE and JML_RUNS.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Records, error) {
	o = o.withDefaults()
	d, err := OpenDirectory(ctx, js, o)
	if err != nil {
		return nil, err
	}
	s, err := OpenSnapshots(ctx, js, o)
	if err != nil {
		return nil, err
	}
	e, err := OpenEvidence(ctx, js, o)
	if err != nil {
		return nil, err
	}
	a, err := OpenAnchors(ctx, js, o)
	if err != nil {
		return nil, err
	}
	q, err := OpenDueQueue(ctx, js, o)
	if err != nil {
		return nil, err
	}
	r, err := OpenRuns(ctx, js, o)
	if err != nil {
		return nil, err
	}
	return &Records{Directory: d, Snapshots: s, Evidence: e, Anchors: a, Due: q, Runs: r}, nil
}

// openKV creates or updates a bucket and returns it with its stream.
func openKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, jetstream.Stream, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("open bucket %s: stream: %w", cfg.Bucket, err)
	}
	return kv, st, nil
}

// isWrongLastSeq reports a failed compare-and-set publish: code 10071, or
// 10164 on replicated streams.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// isKVDelete reports a KV delete or purge marker (or a TTL limit marker).
func isKVDelete(m jetstream.Msg) bool {
	h := m.Headers()
	if h == nil {
		return false
	}
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}

// liveKeys lists the keys of bucket (stored in st) that match filter (a KV
// key pattern, "" for every key) and hold a value, through a key scan: a key
// rewritten during the listing is still listed (see scan).
func liveKeys(ctx context.Context, st jetstream.Stream, bucket, filter string) ([]string, error) {
	prefix := "$KV." + bucket + "."
	cfg := jetstream.ConsumerConfig{FilterSubject: prefix + cmp.Or(filter, ">"), DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, HeadersOnly: true}
	var keys []string
	for m, err := range scan(ctx, st, cfg) {
		if err != nil {
			return nil, err
		}
		if !isKVDelete(m) {
			keys = append(keys, strings.TrimPrefix(m.Subject(), prefix))
		}
	}
	return keys, nil
}

// scanBatch bounds how many messages a scan buffers.
const scanBatch = 256

// scanAttempts bounds how often a scan re-creates its consumer after a
// transient failure (a node of the cluster went away, the consumer was lost
// with it, heartbeats stopped during a leader election).
const scanAttempts = 6

// scan streams the messages of st that cfg selects through an ephemeral
// pull consumer, at most scanBatch buffered at a time, and ends at the
// stream's last sequence as of the start (messages stored later are not
// seen). The consumer is deleted when the scan ends; if the process dies,
// the server removes it after a minute of inactivity.
//
// A key scan (DeliverLastPerSubject) lists every key that existed at the
// start and still exists, even one rewritten while the scan runs. The
// consumer alone would miss such a key: its old message is removed before it
// is delivered and its new one lies past the scan's end (nats.go's KV watcher
// and ListKeys have the same flaw, as their initial-values marker counts a
// rewrite of one key as another key). So the scan first lists the keys from
// the stream's subject state, and reads the last message of each key the
// consumer did not deliver directly, skipping the keys that are gone.
//
// A scan survives the loss of its consumer: on a transient error it creates
// a new one and resumes after the last message it yielded (by start sequence
// for DeliverAll and DeliverByStartTime; for DeliverLastPerSubject, which
// delivers in stream order, by skipping what it already yielded), so a node
// failing in a cluster slows a directory listing down instead of failing a
// reconcile run.
func scan(ctx context.Context, st jetstream.Stream, cfg jetstream.ConsumerConfig) iter.Seq2[jetstream.Msg, error] {
	return func(yield func(jetstream.Msg, error) bool) {
		keys := cfg.DeliverPolicy == jetstream.DeliverLastPerSubjectPolicy
		var opts []jetstream.StreamInfoOpt
		if keys {
			opts = append(opts, jetstream.WithSubjectFilter(cmp.Or(cfg.FilterSubject, ">")))
		}
		info, err := st.Info(ctx, opts...)
		if err != nil {
			yield(nil, fmt.Errorf("scan %s: %w", st.CachedInfo().Config.Name, err))
			return
		}
		s := &scanner{st: st, cfg: cfg, name: info.Config.Name, last: info.State.LastSeq}
		if info.State.Msgs == 0 {
			return
		}
		if keys {
			s.unseen = make(map[string]struct{}, len(info.State.Subjects))
			for subj := range info.State.Subjects {
				s.unseen[subj] = struct{}{}
			}
		}
		backoff := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			done, err := s.run(ctx, yield)
			if done {
				if keys && !s.stopped {
					s.rest(ctx, yield)
				}
				return
			}
			if ctx.Err() != nil || !transientScanError(err) || attempt >= scanAttempts {
				yield(nil, fmt.Errorf("scan %s: %w", s.name, err))
				return
			}
			select {
			case <-ctx.Done():
				yield(nil, fmt.Errorf("scan %s: %w", s.name, ctx.Err()))
				return
			case <-time.After(backoff):
			}
			backoff *= 2
		}
	}
}

// scanner is the state one scan carries across consumer re-creations.
type scanner struct {
	st    jetstream.Stream
	cfg   jetstream.ConsumerConfig
	name  string
	last  uint64 // the stream's last sequence when the scan started
	after uint64 // the last stream sequence yielded
	// unseen holds, in a key scan, the subjects present at the start that
	// have not been yielded yet.
	unseen  map[string]struct{}
	stopped bool // the caller stopped the iteration
}

// rest yields, in a key scan, the last message of each subject present at
// the start that the consumer did not deliver (rewritten or removed since);
// a subject that has no message any more is skipped.
func (s *scanner) rest(ctx context.Context, yield func(jetstream.Msg, error) bool) {
	subjects := slices.Sorted(maps.Keys(s.unseen))
	for _, subj := range subjects {
		raw, err := s.lastOf(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			yield(nil, fmt.Errorf("scan %s: last of %s: %w", s.name, subj, err))
			return
		}
		if !yield(rawMsg{raw: raw, stream: s.name}, nil) {
			return
		}
	}
}

// lastOf reads subject's last message, retrying a transient failure (a
// leader election) like the consumer does.
func (s *scanner) lastOf(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		raw, err := s.st.GetLastMsgForSubject(ctx, subject)
		if err == nil || ctx.Err() != nil || !transientScanError(err) || attempt >= scanAttempts {
			return raw, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// rawMsg presents a message read directly (not through a consumer) as a
// jetstream.Msg: its subject, data, headers and stream sequence. It cannot
// be acknowledged.
type rawMsg struct {
	raw    *jetstream.RawStreamMsg
	stream string
}

var errRawAck = errors.New("a message read directly has no consumer to acknowledge")

func (m rawMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.raw.Sequence}, Timestamp: m.raw.Time, Stream: m.stream}, nil
}
func (m rawMsg) Data() []byte                     { return m.raw.Data }
func (m rawMsg) Headers() nats.Header             { return m.raw.Header }
func (m rawMsg) Subject() string                  { return m.raw.Subject }
func (m rawMsg) Reply() string                    { return "" }
func (m rawMsg) Ack() error                       { return errRawAck }
func (m rawMsg) DoubleAck(context.Context) error  { return errRawAck }
func (m rawMsg) Nak() error                       { return errRawAck }
func (m rawMsg) NakWithDelay(time.Duration) error { return errRawAck }
func (m rawMsg) InProgress() error                { return errRawAck }
func (m rawMsg) Term() error                      { return errRawAck }
func (m rawMsg) TermWithReason(string) error      { return errRawAck }

// transientScanError reports whether a scan may resume on a new consumer.
func transientScanError(err error) bool {
	return errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrConsumerLeadershipChanged) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrServerShutdown)
}

// run consumes until the end of the scan (done) or an error. It returns
// done when the caller stopped the iteration too.
func (s *scanner) run(ctx context.Context, yield func(jetstream.Msg, error) bool) (done bool, err error) {
	cfg := s.cfg
	if s.after > 0 && cfg.DeliverPolicy != jetstream.DeliverLastPerSubjectPolicy {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = s.after + 1
		cfg.OptStartTime = nil
	}
	cfg.AckPolicy = jetstream.AckNonePolicy
	cfg.InactiveThreshold = time.Minute
	cfg.MemoryStorage = true
	cfg.Replicas = 1
	c, err := s.st.CreateConsumer(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.st.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	if c.CachedInfo().NumPending == 0 {
		return true, nil
	}
	// Heartbeats every second: a consumer lost with a node is noticed in
	// about two seconds rather than the client's default thirty.
	it, err := c.Messages(jetstream.PullMaxMessages(scanBatch), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return false, err
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return false, err
		}
		md, err := m.Metadata()
		if err != nil {
			return false, err
		}
		seq := md.Sequence.Stream
		if seq > s.last {
			return true, nil
		}
		if seq > s.after {
			s.after = seq
			delete(s.unseen, m.Subject())
			if !yield(m, nil) {
				s.stopped = true
				return true, nil
			}
		}
		if md.NumPending == 0 || seq == s.last || (s.unseen != nil && len(s.unseen) == 0) {
			return true, nil
		}
	}
}
