// unit_test.go - the client's own rules, without a server: structs as tasks, error type names, reply texts, the walk.

package dlq

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// A Go struct gives the bytes of the every_field vector: fields in declaration order, ints in their smallest form.
func TestEncodeStruct(t *testing.T) {
	type order struct {
		Order int    `msgpack:"order"`
		Items []any  `msgpack:"items"`
		Note  string `msgpack:"note"`
	}
	type meta struct {
		Tenant    string   `msgpack:"tenant"`
		AttemptMs int64    `msgpack:"attempt_ms"`
		Tags      []string `msgpack:"tags"`
	}
	f := Failure{
		TaskID: "order-42", Task: order{42, []any{1, -300, 2.5}, "hello"},
		Error: "connection reset by peer", ErrorType: "ConnectionError", ErrorCategory: "network",
		RetryPolicy: "exponential", MaxRetries: Retries(5), RetrySubject: "dlq.retry.orders",
		Repos: []string{"orders", "billing"}, Metadata: meta{"acme", 1500, []string{"a", "b"}},
		FailedAt: time.UnixMilli(1764800000123), Enqueue: true,
	}
	got, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	want := readVector(t, "envelopes/valid/every_field.msgpack")
	if !bytes.Equal(got, want) {
		t.Errorf("every_field from structs:\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

// Refusals that the vectors do not hold: a task nested too deep, Raw that is not one value, metadata not a map.
func TestEncodeRefusals(t *testing.T) {
	deep := any(1)
	for k := 0; k < MaxDepth-1; k++ {
		deep = []any{deep}
	}
	if _, err := Encode(Failure{TaskID: "a", Task: deep}); err != nil {
		t.Errorf("a task %d levels deep (the envelope makes %d) is refused: %v", MaxDepth-1, MaxDepth, err)
	}
	cases := []struct {
		f      Failure
		field  string
		reason string
	}{
		{Failure{TaskID: "a", Task: []any{deep}}, "task", "too_deep"},
		{Failure{TaskID: "a", Task: Raw{0x01, 0x02}}, "task", "trailing_bytes"},
		{Failure{TaskID: "a", Task: Raw{}}, "task", "truncated"},
		{Failure{TaskID: "a", Task: make(chan int)}, "task", "bad_type"},
		{Failure{TaskID: "a", Task: 1, Metadata: []string{"x"}}, "metadata", "bad_type"},
		{Failure{TaskID: "a", Task: 1, Repos: []string{strings.Repeat("r", MaxStringLen+1)}}, "repos", "too_big"},
		{Failure{TaskID: "a", Task: 1, FailedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "failed_at", "bad_timestamp"},
		{Failure{TaskID: "a", Task: 1, RetrySubject: "dlq.retry.*"}, "retry_subject", "bad_value"},
		{Failure{TaskID: "a", Task: 1, RetrySubject: "dlq..retry"}, "retry_subject", "bad_value"},
		{Failure{TaskID: "a"}, "task", "task_missing"},
		{Failure{TaskID: "a", Task: 1, DependsOn: []string{"a"}}, "depends_on", "bad_value"},
		{Failure{TaskID: "a", Task: 1, DependsOn: []string{"x", "y", "x"}}, "depends_on", "bad_value"},
		{Failure{TaskID: "a", Task: 1, DependsOn: make([]string, MaxDependsOn+1)}, "depends_on", "out_of_range"},
	}
	for _, c := range cases {
		b, err := Encode(c.f)
		var ee *EnvelopeError
		if !errors.As(err, &ee) || ee.Field != c.field || ee.Reason != c.reason || b != nil {
			t.Errorf("want %s %s, got %v (%d bytes)", c.field, c.reason, err, len(b))
		}
	}
	// nil inside a task is a value; Raw{0xc0} is a nil task.
	if b, err := Encode(Failure{TaskID: "a", Task: Raw{0xc0}}); err != nil || !bytes.Contains(b, []byte("task\xc0")) {
		t.Errorf("a nil task: %v %x", err, b)
	}
}

type codeErr struct{}

func (codeErr) Error() string     { return "service unavailable" }
func (codeErr) ErrorType() string { return "HTTP 503" }

func TestErrorType(t *testing.T) {
	op := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		err  error
		want string
	}{
		{op, "*net.OpError"},
		{fmt.Errorf("charge: %w", op), "*net.OpError"},
		{fmt.Errorf("a: %w, b: %w", op, errors.New("x")), "*net.OpError"},
		{fmt.Errorf("no wrap: %v", op), "*errors.errorString"},
		{errors.New("plain"), "*errors.errorString"},
		{fmt.Errorf("ctx: %w", codeErr{}), "HTTP 503"},
		{Fail("TimeoutError", "db timed out after %d ms", 5000), "TimeoutError"},
		{&PanicError{Value: "boom"}, "string"},
		{&PanicError{Value: op}, "*net.OpError"},
	}
	for _, c := range cases {
		if got := ErrorType(c.err); got != c.want {
			t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestEncodeOutcomeTexts(t *testing.T) {
	long := "\xff\xc0" + strings.Repeat("j", 9000)
	body := EncodeOutcome(&Error{Type: "Bad\xff", Message: long})
	o := DecodeOutcome(body)
	if o.OK || !strings.HasPrefix(o.Error, "\uFFFD\uFFFDjjj") || len(o.Error) > MaxErrorLen ||
		!strings.HasSuffix(o.Error, truncatedMarker) || o.ErrorType != "Bad\uFFFD" || !utf8.Valid(body) {
		t.Errorf("junk text: %d bytes %q...", len(o.Error), cut(string(body), 80))
	}
	if o := DecodeOutcome(EncodeOutcome(errors.New(""))); o.OK || o.Error != "worker handler failed without a message" {
		t.Errorf("an empty message: %+v", o)
	}
	if o := DecodeOutcome(EncodeOutcome(&Error{Message: "x"})); o.OK || o.ErrorType != "" || o.Error != "x" {
		t.Errorf("no type: %+v", o)
	}
}

func TestSubjects(t *testing.T) {
	for s, want := range map[string]bool{"dlq.retry.orders": true, "a": true, "a.>": false, "a b": false, "a..b": false, ".a": false, "a.": false, "a\x01": false, "": false} {
		if subjectOK(s, false) != want {
			t.Errorf("subjectOK(%q, false) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"dlq.retry.>": true, "dlq.*.x": true, "a.>.b": false, "a.b*": false} {
		if subjectOK(s, true) != want {
			t.Errorf("subjectOK(%q, true) != %v", s, want)
		}
	}
}
