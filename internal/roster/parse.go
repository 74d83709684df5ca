package roster

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

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

// Parse reads a roster: a JSON array when the first non-blank byte is '[',
// CSV otherwise. Every row is validated; the whole file is rejected (an
// *Errors listing up to MaxErrors row errors) if any row is invalid. name is
// used in messages.
func Parse(name string, r io.Reader) ([]Row, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("roster %s: %w", name, err)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 BOM from spreadsheets
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return parseJSON(name, b)
	}
	return parseCSV(name, b)
}

type collector struct {
	errs   Errors
	emails map[string]int
	ids    map[string]int
}

func (c *collector) add(line int, field, format string, args ...any) {
	if len(c.errs.List) >= MaxErrors {
		c.errs.More = true
		return
	}
	c.errs.List = append(c.errs.List, &LineError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *collector) result(rows []Row) ([]Row, error) {
	if len(c.errs.List) > 0 {
		return nil, &c.errs
	}
	return rows, nil
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
		} else if prev, ok := c.emails[strings.ToLower(p.Email)]; ok {
			c.add(line, "email", "%s already appears on line %d", p.Email, prev)
		} else {
			c.emails[strings.ToLower(p.Email)] = line
		}
	}
	if p.ID != "" {
		if prev, ok := c.ids[p.ID]; ok {
			c.add(line, "id", "%s already appears on line %d", p.ID, prev)
		} else {
			c.ids[p.ID] = line
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

func parseCSV(name string, b []byte) ([]Row, error) {
	c := &collector{errs: Errors{Name: name}, emails: map[string]int{}, ids: map[string]int{}}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = len(Header)
	r.ReuseRecord = true
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		c.add(1, "", "empty file: want the header %s", strings.Join(Header, ","))
		return c.result(nil)
	}
	if err != nil {
		c.add(1, "", "header: %v", csvMsg(err))
		return c.result(nil)
	}
	for i, h := range head {
		if strings.TrimSpace(strings.ToLower(h)) != Header[i] {
			c.add(1, "", "header column %d is %q, want %q (header: %s)", i+1, h, Header[i], strings.Join(Header, ","))
			return c.result(nil)
		}
	}
	var rows []Row
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
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
		c.check(line, &p)
		rows = append(rows, Row{Line: line, Person: p})
	}
	return c.result(rows)
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

// lineAt is the 1-based line of byte offset off.
func lineAt(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	return bytes.Count(b[:off], []byte("\n")) + 1
}

func parseJSON(name string, b []byte) ([]Row, error) {
	c := &collector{errs: Errors{Name: name}, emails: map[string]int{}, ids: map[string]int{}}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		c.add(lineAt(b, dec.InputOffset()), "", "%v", err)
		return c.result(nil)
	}
	var rows []Row
	lines := newLineIndex(b)
	for dec.More() {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			c.add(lines.at(start), "", "%v", err)
			return c.result(nil)
		}
		// The element starts after the separator and blanks that follow start.
		rest := b[start:]
		skip := len(rest) - len(bytes.TrimLeft(rest, " \t\r\n,"))
		line := lines.at(start + int64(skip))
		var p events.Person
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&p); err != nil {
			c.add(line, "", "%v", err)
			continue
		}
		if p.Status != "" {
			p.Status = events.Status(strings.ToLower(string(p.Status)))
		}
		c.check(line, &p)
		rows = append(rows, Row{Line: line, Person: p})
	}
	if _, err := dec.Token(); err != nil {
		c.add(lines.at(dec.InputOffset()), "", "%v", err)
		return c.result(nil)
	}
	if dec.More() {
		c.add(lines.at(dec.InputOffset()), "", "data after the array")
	} else if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		c.add(lines.at(dec.InputOffset()), "", "data after the array")
	}
	return c.result(rows)
}

// lineIndex answers offset → line in O(log n).
type lineIndex struct{ starts []int64 }

func newLineIndex(b []byte) *lineIndex {
	li := &lineIndex{starts: []int64{0}}
	for i, ch := range b {
		if ch == '\n' {
			li.starts = append(li.starts, int64(i+1))
		}
	}
	return li
}

func (li *lineIndex) at(off int64) int {
	lo, hi := 0, len(li.starts)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if li.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + 1
}
