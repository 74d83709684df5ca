package roster

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"net/mail"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Header is the CSV header a roster file must start with, in this order.
var Header = []string{"id", "email", "name", "status", "department", "title", "groups", "manager_email"}

// MaxErrors bounds how many row errors one parse reports.
const MaxErrors = 20

// Row is one person of a roster and the line it starts on (1-based).
type Row struct {
	Line   int           `json:"line"`
	Person events.Person `json:"person"`
}

// LineError is a validation error of one row or field.
type LineError struct {
	Line  int
	Field string
	Msg   string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
}

// ErrInvalid is wrapped by every validation failure (errors.Is).
var ErrInvalid = errors.New("invalid roster")

// Errors is the list of row errors of a rejected roster.
type Errors struct {
	Name string
	List []*LineError
	More bool // more errors than MaxErrors
}

func (e *Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "roster %s: %d error(s)", e.Name, len(e.List))
	if e.More {
		b.WriteString(" (first shown)")
	}
	for _, le := range e.List {
		b.WriteString("\n  " + le.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Errors) Is(t error) bool { return t == ErrInvalid }

// DefaultMaxBytes bounds a roster body (JML_ROSTER_MAX_BYTES) when the
// caller sets no other limit.
const DefaultMaxBytes = 512 << 20

// Parse reads a whole roster into memory: a JSON array when the first
// non-blank byte is '[', CSV otherwise. Every row is validated; the whole
// file is rejected (an *Errors listing up to MaxErrors row errors) if any row
// is invalid. name is used in messages. For large rosters use Scan, which
// holds one row at a time.
func Parse(name string, r io.Reader) ([]Row, error) {
	var rows []Row
	if _, err := Scan(name, r, func(row Row) error { rows = append(rows, row); return nil }); err != nil {
		return nil, err
	}
	return rows, nil
}

// Scan reads a roster row by row (CSV through encoding/csv, a JSON array
// through a jsontext token decoder), validates each row and calls fn (when
// not nil) with each valid row until the first invalid one; it reads on to
// report up to MaxErrors row errors (*Errors) and returns the row count.
// Memory does not grow with the rows except for the duplicate check: one
// 64-bit hash per id and per email (11 to 21 bytes each, see keySet).
// A hash collision reports a duplicate that is none (odds about n²/2⁶⁵).
// An error from fn stops the scan and is returned as is.
func Scan(name string, r io.Reader, fn func(Row) error) (int, error) {
	return scan(name, r, fn, newKeySet())
}

// scan is Scan with the set of the rows' id and email keys (ImportReader
// shares it with --full).
func scan(name string, r io.Reader, fn func(Row) error, seen *keySet) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // a UTF-8 BOM from spreadsheets
	}
	c := &collector{errs: Errors{Name: name}, seen: seen, fn: fn}
	var err error
	if firstNonBlank(br) == '[' {
		err = c.scanJSON(br)
	} else {
		err = c.scanCSV(br)
	}
	if err != nil {
		var le *readError
		if errors.As(err, &le) {
			return c.rows, fmt.Errorf("roster %s: %w", name, le.err)
		}
		return c.rows, err
	}
	if len(c.errs.List) > 0 {
		return c.rows, &c.errs
	}
	return c.rows, nil
}

// readError is a failure to read the input (not a validation error).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// firstNonBlank peeks at the first byte that is not blank (0 when none in
// the reader's buffer).
func firstNonBlank(br *bufio.Reader) byte {
	for n := 1; n <= br.Size(); n++ {
		b, _ := br.Peek(n)
		if len(b) < n {
			return 0
		}
		switch b[n-1] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b[n-1]
	}
	return 0
}

// keySet is a set of strings kept as their 64-bit hashes (maphash, seeded
// per set) in 256 open-addressing tables (linear probing), chosen by a
// hash's top byte, each growing on its own by a quarter once 7/8 full:
// 8 bytes a slot, so 9 to 12 bytes a key, and while one table grows only
// that 1/256th is held twice (one doubling table for everything would hold
// up to 21 bytes a key, and the whole set twice at each doubling). A Go map
// of the same hashes costs about three times that.
type keySet struct {
	seed  maphash.Seed
	parts [256]keyPart
}

type keyPart struct {
	slots []uint64 // 0 = empty (a hash of 0 is stored as 1)
	n     int
}

func newKeySet() *keySet {
	s := &keySet{seed: maphash.MakeSeed()}
	for i := range s.parts {
		s.parts[i].slots = make([]uint64, 16)
	}
	return s
}

func (s *keySet) hash(k string) uint64 {
	if h := maphash.String(s.seed, k); h != 0 {
		return h
	}
	return 1
}

// add adds k and reports whether it was new.
func (s *keySet) add(k string) bool {
	h := s.hash(k)
	p := &s.parts[h>>56]
	if !p.insert(h) {
		return false
	}
	p.n++
	if p.n*8 > len(p.slots)*7 {
		old := p.slots
		p.slots = make([]uint64, len(old)+len(old)/4+1)
		for _, h := range old {
			if h != 0 {
				p.insert(h)
			}
		}
	}
	return true
}

// start is h's first slot in p: the bits below the top byte, scaled to the
// table's length (any length, not only powers of two).
func (p *keyPart) start(h uint64) int {
	hi, _ := bits.Mul64(h<<8, uint64(len(p.slots)))
	return int(hi)
}

// next is the slot after i, wrapping around.
func (p *keyPart) next(i int) int {
	if i++; i == len(p.slots) {
		return 0
	}
	return i
}

func (p *keyPart) insert(h uint64) bool {
	for i := p.start(h); ; i = p.next(i) {
		switch p.slots[i] {
		case 0:
			p.slots[i] = h
			return true
		case h:
			return false
		}
	}
}

func (s *keySet) has(k string) bool {
	h := s.hash(k)
	p := &s.parts[h>>56]
	for i := p.start(h); ; i = p.next(i) {
		switch p.slots[i] {
		case 0:
			return false
		case h:
			return true
		}
	}
}

type collector struct {
	errs Errors
	seen *keySet // "id:" + id and "email:" + lower-cased email of every row
	fn   func(Row) error
	rows int
}

// row counts a parsed row and hands it to fn while the roster is valid.
func (c *collector) row(r Row) error {
	c.rows++
	if c.fn == nil || len(c.errs.List) > 0 {
		return nil
	}
	return c.fn(r)
}

func (c *collector) add(line int, field, format string, args ...any) {
	if len(c.errs.List) >= MaxErrors {
		c.errs.More = true
		return
	}
	c.errs.List = append(c.errs.List, &LineError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// check validates one person and records duplicates across the file.
func (c *collector) check(line int, p *events.Person) {
	p.ID = strings.TrimSpace(p.ID)
	p.Email = strings.TrimSpace(p.Email)
	if p.ID == "" && p.Email == "" {
		c.add(line, "", "a person needs an id or an email")
	}
	before := len(c.errs.List)
	defer func() {
		// The limits every entry point applies (ids, emails, text): a row's
		// id and email end up in KV keys.
		if len(c.errs.List) == before {
			if err := events.CheckPerson(*p); err != nil {
				c.add(line, "", "%s", strings.TrimPrefix(err.Error(), events.ErrInvalid.Error()+": "))
			}
		}
	}()
	if p.Email != "" {
		a, err := mail.ParseAddress(p.Email)
		if err != nil || a.Address != p.Email || a.Name != "" {
			c.add(line, "email", "%q is not a plain email address", p.Email)
		} else if !c.seen.add("email:" + strings.ToLower(p.Email)) {
			c.add(line, "email", "%s already appears on an earlier line", p.Email)
		}
	}
	if p.ID != "" {
		if !c.seen.add("id:" + p.ID) {
			c.add(line, "id", "%s already appears on an earlier line", p.ID)
		}
	}
	switch {
	case p.Status == "":
		c.add(line, "status", "required (active, suspended or terminated)")
	case !p.Status.Valid():
		c.add(line, "status", "%q: want active, suspended or terminated", p.Status)
	}
	if p.ManagerEmail != "" {
		if a, err := mail.ParseAddress(p.ManagerEmail); err != nil || a.Address != p.ManagerEmail {
			c.add(line, "manager_email", "%q is not a plain email address", p.ManagerEmail)
		}
	}
	for _, g := range p.Groups {
		if strings.TrimSpace(g) == "" {
			c.add(line, "groups", "empty group name")
			break
		}
	}
	if p.Groups == nil {
		p.Groups = []string{}
	}
}

func (c *collector) scanCSV(in io.Reader) error {
	r := csv.NewReader(in)
	r.FieldsPerRecord = len(Header)
	r.ReuseRecord = true
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		c.add(1, "", "empty file: want the header %s", strings.Join(Header, ","))
		return nil
	}
	if err != nil {
		if !isParseError(err) {
			return &readError{err}
		}
		c.add(1, "", "header: %v", csvMsg(err))
		return nil
	}
	for i, h := range head {
		if strings.TrimSpace(strings.ToLower(h)) != Header[i] {
			c.add(1, "", "header column %d is %q, want %q (header: %s)", i+1, h, Header[i], strings.Join(Header, ","))
			return nil
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !isParseError(err) {
			return &readError{err}
		}
		if err != nil {
			// FieldPos is only valid after a successful Read.
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			c.add(line, "", "%v", csvMsg(err))
			if pe == nil || !errors.Is(pe.Err, csv.ErrFieldCount) {
				break // the reader cannot resynchronise after a quoting error
			}
			continue
		}
		line, _ := r.FieldPos(0)
		p := events.Person{ID: rec[0], Email: rec[1], Name: strings.TrimSpace(rec[2]),
			Status: events.Status(strings.ToLower(strings.TrimSpace(rec[3]))), Department: strings.TrimSpace(rec[4]),
			Title: strings.TrimSpace(rec[5]), ManagerEmail: strings.TrimSpace(rec[7]), Groups: []string{}}
		if g := strings.TrimSpace(rec[6]); g != "" {
			for _, x := range strings.Split(g, ";") {
				p.Groups = append(p.Groups, strings.TrimSpace(x))
			}
		}
		before := len(c.errs.List)
		c.check(line, &p)
		if len(c.errs.List) == before {
			if err := c.row(Row{Line: line, Person: p}); err != nil {
				return err
			}
		} else {
			c.rows++
		}
	}
	return nil
}

func isParseError(err error) bool {
	var pe *csv.ParseError
	return errors.As(err, &pe)
}

func csvMsg(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return fmt.Sprintf("want %d fields (%s)", len(Header), strings.Join(Header, ","))
		}
		return pe.Err.Error()
	}
	return err.Error()
}

func (c *collector) scanJSON(in io.Reader) error {
	lines := &lineTracker{r: in}
	dec := jsontext.NewDecoder(lines)
	if _, err := dec.ReadToken(); err != nil { // the '['
		return c.jsonErr(lines, dec, err)
	}
	for dec.PeekKind() != ']' {
		raw, err := dec.ReadValue()
		if err != nil {
			return c.jsonErr(lines, dec, err)
		}
		line := lines.line(dec.InputOffset() - int64(len(raw)))
		var p events.Person
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&p); err != nil {
			c.add(line, "", "%v", err)
			c.rows++
			continue
		}
		if p.Status != "" {
			p.Status = events.Status(strings.ToLower(string(p.Status)))
		}
		before := len(c.errs.List)
		c.check(line, &p)
		if len(c.errs.List) == before {
			if err := c.row(Row{Line: line, Person: p}); err != nil {
				return err
			}
		} else {
			c.rows++
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the ']'
		return c.jsonErr(lines, dec, err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		c.add(lines.line(dec.InputOffset()), "", "data after the array")
	}
	return nil
}

// jsonErr records a syntax error at its line, or returns a read error.
func (c *collector) jsonErr(lines *lineTracker, dec *jsontext.Decoder, err error) error {
	if lines.err != nil && errors.Is(err, lines.err) {
		return &readError{lines.err}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.add(lines.line(dec.InputOffset()), "", "%v", err)
	return nil
}

// lineTracker counts lines in a stream: it keeps the offsets of the newlines
// the decoder has read ahead and not passed yet, so it holds a buffer's worth
// at most.
type lineTracker struct {
	r      io.Reader
	off    int64
	nl     []int64 // newline offsets not passed yet
	passed int     // newlines before nl[0]
	err    error   // the reader's error other than EOF
}

func (lt *lineTracker) Read(p []byte) (int, error) {
	n, err := lt.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			lt.nl = append(lt.nl, lt.off+int64(i))
		}
	}
	lt.off += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		lt.err = err
	}
	return n, err
}

// line is the 1-based line of offset off; offsets must not decrease.
func (lt *lineTracker) line(off int64) int {
	i := 0
	for i < len(lt.nl) && lt.nl[i] < off {
		i++
	}
	lt.passed += i
	lt.nl = append(lt.nl[:0], lt.nl[i:]...)
	return lt.passed + 1
}
