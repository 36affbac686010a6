// envelope.go - a failure, its checks against the contract (DESIGN section 4) and its MessagePack envelope.

package dlq

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// The sidecar's default limits (DESIGN section 4, README "Wire contract"),
// which the client checks before publishing.
const (
	MaxTaskIDLen     = 256   // bytes of task_id
	MaxStringLen     = 1024  // bytes of error_type, error_category, retry_policy, retry_subject and each repos entry
	MaxErrorLen      = 4096  // bytes of an error message in a worker's reply (longer text is cut with a marker)
	MaxRepos         = 64    // entries of repos
	MaxMetadataKeys  = 64    // keys of metadata
	MaxMetadataBytes = 16384 // encoded bytes of metadata
	MaxDepth         = 32    // nesting of the whole envelope; the envelope map is level 1
	MaxDelays        = 32    // delays of Backoff
	MaxDependsOn     = 32    // task ids of DependsOn
	MaxDelay         = 7 * 24 * time.Hour
)

const (
	truncatedMarker    = "...[truncated]" // ends a text cut at its limit
	maxSubjectLen      = 4096             // bytes of a subject the client accepts
	defaultFieldQuoted = 100              // bytes of a bad value quoted in a message
)

// Failure is one failed task, as a service reports it (DESIGN section 4).
// The zero value of every optional field leaves its key out of the
// envelope, so that the sidecar's defaults apply.
type Failure struct {
	// Service is where the failure goes: the subject tokens after
	// "<prefix>.failed." ("orders", or "orders.eu"). Required by Report
	// and Protect; not part of the envelope.
	Service string

	// TaskID identifies the task: 1-256 bytes of UTF-8 without control
	// characters. Repeated failures with the same id update one task.
	TaskID string

	// Task is the task itself, republished to workers byte for byte.
	// Any value the MessagePack library encodes (a struct with msgpack
	// tags, a map, a slice ...; ints in their smallest form, map keys
	// sorted); a []byte is sent as a MessagePack bin (opaque bytes); a
	// Raw is sent as it is, after a check that it is one complete value.
	// Nil is refused ("task: missing"): send Raw{0xc0} for a nil task.
	Task any

	// Error is the error message (cut by the sidecar at 4096 bytes).
	Error string

	// ErrorType is the exception class or code ("TimeoutError",
	// "HTTP 503"), at most 1024 bytes. The sidecar classifies the failure
	// from it and from Error.
	ErrorType string

	// ErrorCategory, when set, overrides the sidecar's classifier:
	// transient, network, resource, permission, validation or permanent
	// (another name is sent, and ignored by the sidecar).
	ErrorCategory string

	// RetryPolicy, when set, overrides the category's policy: never,
	// linear, exponential or immediate, in any case.
	RetryPolicy string

	// MaxRetries, when not nil, overrides the sidecar's
	// default_max_retries: 0-100 (0 stores the task exhausted at once).
	// See [Retries].
	MaxRetries *int

	// RetrySubject is where the retries go (default: the sidecar's
	// dlq.retry.<service>): a subject without wildcards, which must match
	// the sidecar's retry.allowed_subjects (default dlq.retry.>).
	RetrySubject string

	// Repos is kept and shown by the sidecar, never interpreted: at most
	// 64 strings of at most 1024 bytes.
	Repos []string

	// Metadata is free-form, encoded as Task is, and must encode as a
	// map: at most 64 keys and 16384 bytes.
	Metadata any

	// FailedAt is when the task failed (default: when the sidecar
	// received the failure); years 0000-9999, sent as ms since the epoch.
	FailedAt time.Time

	// Enqueue says "store this one" to a sidecar whose strategy is manual.
	Enqueue bool

	// Backoff, when set, is the task's own delay list (issue 17): the
	// delays before attempts 1, 2, ..., the last one repeating; 1-32 of
	// them, each a whole number of ms in 1 ms - 7 days, sent as ms.
	Backoff []time.Duration

	// Template names a retry template configured on the sidecar
	// (templates): its policy, budget, delays, priority and retry subject
	// fill what the envelope leaves out. An unknown name is refused (400).
	Template string

	// Priority is high, normal or low (any case): which retries go first
	// while the sidecar's max_in_flight or max_per_second hold some back.
	// Empty: the sidecar's default for the subject.
	Priority string

	// DependsOn holds the task back until each of these task ids has
	// completed (each a valid task id, as TaskID).
	DependsOn []string

	// MsgID is the JetStream Nats-Msg-Id of a durable report (a resend
	// with the same id is stored once); default "<task_id>:<failed_at in
	// ms, else now in ms>". Not part of the envelope.
	MsgID string
}

// Retries returns a pointer to n, for [Failure].MaxRetries.
func Retries(n int) *int { return &n }

// Raw is the MessagePack encoding of exactly one value, sent as it is
// (as a Failure's Task or Metadata, or inside either).
type Raw []byte

// EncodeMsgpack writes r as it is; it makes Raw usable inside any value
// given to the MessagePack library.
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.Encode(msgpack.RawMessage(r))
}

// EnvelopeError is a failure that breaks the contract. Report and Encode
// return it before anything is published.
type EnvelopeError struct {
	// Field is the envelope key that breaks the contract ("task_id",
	// "max_retries" ...), or "envelope" for the whole message.
	Field string
	// Reason is the sidecar's snake_case code for the refusal, as its
	// Dlq-Invalid-Reason header and tests/vectors/manifest.json spell it
	// ("task_id_missing", "too_big", "out_of_range", "bad_value" ...).
	Reason string
	// Message is one sentence that names the field first, the sidecar's
	// own where it has one: "max_retries: 101 is out of range 0-100".
	Message string
}

// Error returns e.Message.
func (e *EnvelopeError) Error() string { return e.Message }

func refuse(field, reason, format string, args ...any) *EnvelopeError {
	return &EnvelopeError{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

var policies = []string{"never", "linear", "exponential", "immediate"}
var priorities = []string{"high", "normal", "low"}

// Years 0000-9999 in ms since the epoch.
const (
	minFailedAtMs = -62167219200000
	maxFailedAtMs = 253402300799999
)

func checkTaskID(id string) *EnvelopeError {
	if id == "" {
		return refuse("task_id", "task_id_missing", "task_id: missing")
	}
	if len(id) > MaxTaskIDLen {
		return refuse("task_id", "too_big", "task_id: %d bytes, at most %d", len(id), MaxTaskIDLen)
	}
	for k := 0; k < len(id); {
		r, n := utf8.DecodeRuneInString(id[k:])
		if r == utf8.RuneError && n <= 1 {
			return refuse("task_id", "bad_utf8", "task_id: not valid UTF-8 at byte %d", k)
		}
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return refuse("task_id", "bad_chars", "task_id: control character at byte %d", k)
		}
		k += n
	}
	return nil
}

func checkString(name, s string) *EnvelopeError {
	if len(s) > MaxStringLen {
		return refuse(name, "too_big", "%s: %d bytes, at most %d", name, len(s), MaxStringLen)
	}
	return nil
}

// encodeValue encodes v for the key name (task or metadata): Raw as it is
// after a walk, []byte as a bin, anything else through the library.
func encodeValue(name string, v any) ([]byte, *EnvelopeError) {
	var b []byte
	switch t := v.(type) {
	case Raw:
		b = t
	case msgpack.RawMessage:
		b = t
	default:
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		enc.SetSortMapKeys(true)
		if err := enc.Encode(v); err != nil {
			return nil, refuse(name, "bad_type", "%s: cannot be encoded as MessagePack: %v", name, err)
		}
		b = buf.Bytes()
	}
	// The envelope is level 1: the value may nest MaxDepth-1 deep.
	used, reason, at := mpWalk(b, MaxDepth-1)
	if reason != "" {
		return nil, refuse(name, reason, "%s: %s at byte %d of its bytes", name, walkText(reason), at)
	}
	if used != len(b) {
		return nil, refuse(name, "trailing_bytes", "%s: %d trailing byte(s) after the value", name, len(b)-used)
	}
	return b, nil
}

func walkText(reason string) string {
	switch reason {
	case "too_deep":
		return "nesting deeper than the limit"
	case "bad_msgpack":
		return "reserved byte 0xc1"
	}
	return "a declared length passes the end of the input"
}

// checked is a failure that passed the checks, with its encoded parts.
type checked struct {
	task, metadata []byte
}

// check applies every rule of DESIGN section 4, in the contract's key order.
func check(f *Failure) (*checked, *EnvelopeError) {
	var c checked
	var e *EnvelopeError
	if e = checkTaskID(f.TaskID); e != nil {
		return nil, e
	}
	if f.Task == nil {
		return nil, refuse("task", "task_missing", "task: missing")
	}
	if c.task, e = encodeValue("task", f.Task); e != nil {
		return nil, e
	}
	for _, s := range [...][2]string{{"error_type", f.ErrorType}, {"error_category", f.ErrorCategory}, {"retry_policy", f.RetryPolicy}} {
		if e = checkString(s[0], s[1]); e != nil {
			return nil, e
		}
	}
	if f.RetryPolicy != "" && !knownPolicy(f.RetryPolicy) {
		return nil, refuse("retry_policy", "bad_value", "retry_policy: not one of %s", strings.Join(policies, ", "))
	}
	if f.MaxRetries != nil && (*f.MaxRetries < 0 || *f.MaxRetries > 100) {
		return nil, refuse("max_retries", "out_of_range", "max_retries: %d is out of range 0-100", *f.MaxRetries)
	}
	if e = checkString("retry_subject", f.RetrySubject); e != nil {
		return nil, e
	}
	if f.RetrySubject != "" && !subjectOK(f.RetrySubject, false) {
		return nil, refuse("retry_subject", "bad_value",
			"retry_subject: %q is not a NATS subject to publish to (empty token, whitespace, control character or wildcard)",
			cut(f.RetrySubject, defaultFieldQuoted))
	}
	if len(f.Repos) > MaxRepos {
		return nil, refuse("repos", "too_big", "repos: %d entries, at most %d", len(f.Repos), MaxRepos)
	}
	for k, r := range f.Repos {
		if len(r) > MaxStringLen {
			return nil, refuse("repos", "too_big", "repos: entry %d is %d bytes, at most %d", k, len(r), MaxStringLen)
		}
	}
	if f.Metadata != nil {
		if c.metadata, e = encodeValue("metadata", f.Metadata); e != nil {
			return nil, e
		}
		keys, isMap := mpMapLen(c.metadata)
		if !isMap {
			return nil, refuse("metadata", "bad_type", "metadata: must be a map, not %s", mpKind(c.metadata[0]))
		}
		if keys > MaxMetadataKeys {
			return nil, refuse("metadata", "too_many_keys", "metadata: %d keys, at most %d", keys, MaxMetadataKeys)
		}
		if len(c.metadata) > MaxMetadataBytes {
			return nil, refuse("metadata", "too_big", "metadata: %d bytes, at most %d", len(c.metadata), MaxMetadataBytes)
		}
	}
	if !f.FailedAt.IsZero() {
		if ms := f.FailedAt.UnixMilli(); ms < minFailedAtMs || ms > maxFailedAtMs {
			return nil, refuse("failed_at", "bad_timestamp", "failed_at: out of range (years 0000-9999)")
		}
	}
	return &c, checkIssue17(f)
}

// checkIssue17 checks Backoff, Template, Priority and DependsOn.
func checkIssue17(f *Failure) *EnvelopeError {
	if len(f.Backoff) > MaxDelays {
		return refuse("backoff", "out_of_range", "backoff: %d delays, at most %d", len(f.Backoff), MaxDelays)
	}
	for k, d := range f.Backoff {
		if d < time.Millisecond || d > MaxDelay || d%time.Millisecond != 0 {
			return refuse("backoff", "out_of_range", "backoff[%d]: %v is not a whole number of ms in 1ms-168h (7 days)", k, d)
		}
	}
	if e := checkString("template", f.Template); e != nil {
		return e
	}
	if e := checkString("priority", f.Priority); e != nil {
		return e
	}
	if f.Priority != "" && !oneOf(priorities, f.Priority) {
		return refuse("priority", "bad_value", "priority: not one of %s", strings.Join(priorities, ", "))
	}
	if len(f.DependsOn) > MaxDependsOn {
		return refuse("depends_on", "out_of_range", "depends_on: %d task ids, at most %d", len(f.DependsOn), MaxDependsOn)
	}
	for k, id := range f.DependsOn {
		if e := checkTaskID(id); e != nil {
			return refuse("depends_on", "bad_value", "depends_on: entry %d is not a task id (%s)", k, e.Message)
		}
		// The sidecar sends these to dlq.invalid (the failure is not stored): refused here.
		if id == f.TaskID {
			return refuse("depends_on", "bad_value", "depends_on: entry %d is the task's own id", k)
		}
		for j := 0; j < k; j++ {
			if f.DependsOn[j] == id {
				return refuse("depends_on", "bad_value", "depends_on: entry %d names %q again", k, id)
			}
		}
	}
	return nil
}

func knownPolicy(p string) bool { return oneOf(policies, p) }

// oneOf says whether p is one of names, in any case.
func oneOf(names []string, p string) bool {
	for _, name := range names {
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// Encode checks f against the contract (DESIGN section 4, the sidecar's
// default limits) and returns its MessagePack envelope: keys in the
// contract's order, each value in its smallest form, the same bytes as the
// canonical vectors of tests/vectors. Service and MsgID are not part of
// it. An envelope that breaks a rule is an [*EnvelopeError] naming the
// field. Safe for concurrent use.
func Encode(f Failure) ([]byte, error) {
	c, e := check(&f)
	if e != nil {
		return nil, e
	}
	n := 2
	for _, set := range []bool{f.Error != "", f.ErrorType != "", f.ErrorCategory != "", f.RetryPolicy != "",
		f.MaxRetries != nil, f.RetrySubject != "", len(f.Repos) > 0, c.metadata != nil, !f.FailedAt.IsZero(), f.Enqueue,
		len(f.Backoff) > 0, f.Template != "", f.Priority != "", len(f.DependsOn) > 0} {
		if set {
			n++
		}
	}
	var buf bytes.Buffer
	buf.Grow(64 + len(c.task) + len(c.metadata) + len(f.Error))
	enc := msgpack.NewEncoder(&buf) // bytes.Buffer is written directly, never buffered
	// Writes to a bytes.Buffer cannot fail: the errors are not checked.
	_ = enc.EncodeMapLen(n)
	str := func(key, v string) {
		if v != "" {
			_ = enc.EncodeString(key)
			_ = enc.EncodeString(v)
		}
	}
	strs := func(key string, v []string) {
		if len(v) > 0 {
			_ = enc.EncodeString(key)
			_ = enc.EncodeArrayLen(len(v))
			for _, s := range v {
				_ = enc.EncodeString(s)
			}
		}
	}
	str("task_id", f.TaskID)
	_ = enc.EncodeString("task")
	buf.Write(c.task)
	str("error", f.Error)
	str("error_type", f.ErrorType)
	str("error_category", f.ErrorCategory)
	str("retry_policy", f.RetryPolicy)
	if f.MaxRetries != nil {
		_ = enc.EncodeString("max_retries")
		_ = enc.EncodeInt(int64(*f.MaxRetries))
	}
	str("retry_subject", f.RetrySubject)
	strs("repos", f.Repos)
	if c.metadata != nil {
		_ = enc.EncodeString("metadata")
		buf.Write(c.metadata)
	}
	if !f.FailedAt.IsZero() {
		_ = enc.EncodeString("failed_at")
		_ = enc.EncodeInt(f.FailedAt.UnixMilli())
	}
	if f.Enqueue {
		_ = enc.EncodeString("enqueue")
		_ = enc.EncodeBool(true)
	}
	if len(f.Backoff) > 0 {
		_ = enc.EncodeString("backoff")
		_ = enc.EncodeArrayLen(len(f.Backoff))
		for _, d := range f.Backoff {
			_ = enc.EncodeInt(d.Milliseconds())
		}
	}
	str("template", f.Template)
	str("priority", f.Priority)
	strs("depends_on", f.DependsOn)
	return buf.Bytes(), nil
}
