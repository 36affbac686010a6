// vectors_test.go - the client against the shared vectors of tests/vectors, without a server.

package dlq

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// vectorsDir is tests/vectors; DLQ_VECTORS_DIR overrides it.
func vectorsDir() string {
	if d := os.Getenv("DLQ_VECTORS_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "tests", "vectors")
}

type manifestEnvelope struct {
	Name          string                          `json:"name"`
	Msgpack       string                          `json:"msgpack"`
	JSON          *string                         `json:"json"`
	Valid         bool                            `json:"valid"`
	Canonical     bool                            `json:"canonical"`
	Field         string                          `json:"field"`
	Reason        string                          `json:"reason"`
	Why           string                          `json:"why"`
	ClientRefuses *struct{ Field, Reason string } `json:"client_refuses"`
	Expect        map[string]any                  `json:"expect"`
}

type manifestOutcome struct {
	Name      string  `json:"name"`
	File      string  `json:"file"`
	OK        bool    `json:"ok"`
	Canonical bool    `json:"canonical"`
	Error     string  `json:"error"`
	ErrorType *string `json:"error_type"`
}

type manifest struct {
	KeyOrder  []string           `json:"key_order"`
	Envelopes []manifestEnvelope `json:"envelopes"`
	Outcomes  []manifestOutcome  `json:"outcomes"`
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	var m manifest
	b, err := os.ReadFile(filepath.Join(vectorsDir(), "manifest.json"))
	if err != nil {
		t.Fatalf("the shared vectors: %v", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return m
}

func readVector(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jvalue is a JSON value that keeps the order of object keys.
type jvalue struct {
	kind string // "object", "array", "string", "number", "bool", "null"
	keys []string
	vals []jvalue
	str  string
	num  json.Number
	b    bool
	dup  bool // an object with a duplicate key
}

func parseJSON(dec *json.Decoder) (jvalue, error) {
	tok, err := dec.Token()
	if err != nil {
		return jvalue{}, err
	}
	switch v := tok.(type) {
	case json.Delim:
		out := jvalue{kind: "array"}
		if v == '{' {
			out.kind = "object"
		}
		seen := map[string]bool{}
		for dec.More() {
			if out.kind == "object" {
				k, err := dec.Token()
				if err != nil {
					return jvalue{}, err
				}
				key := k.(string)
				out.dup = out.dup || seen[key]
				seen[key] = true
				out.keys = append(out.keys, key)
			}
			x, err := parseJSON(dec)
			if err != nil {
				return jvalue{}, err
			}
			out.vals = append(out.vals, x)
		}
		_, err = dec.Token() // the closing delimiter
		return out, err
	case string:
		return jvalue{kind: "string", str: v}, nil
	case json.Number:
		return jvalue{kind: "number", num: v}, nil
	case bool:
		return jvalue{kind: "bool", b: v}, nil
	}
	return jvalue{kind: "null"}, nil
}

func parseJSONBytes(b []byte) (jvalue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseJSON(dec)
	if err == nil {
		if _, more := dec.Token(); more != io.EOF {
			err = errors.New("bytes after the value")
		}
	}
	return v, err
}

// packOrdered writes v as MessagePack, objects in their order, each value in its smallest form.
func packOrdered(enc *msgpack.Encoder, v jvalue) {
	switch v.kind {
	case "object":
		_ = enc.EncodeMapLen(len(v.keys))
		for k := range v.keys {
			_ = enc.EncodeString(v.keys[k])
			packOrdered(enc, v.vals[k])
		}
	case "array":
		_ = enc.EncodeArrayLen(len(v.vals))
		for _, x := range v.vals {
			packOrdered(enc, x)
		}
	case "string":
		_ = enc.EncodeString(v.str)
	case "number":
		if n, err := v.num.Int64(); err == nil {
			_ = enc.EncodeInt(n)
		} else {
			f, _ := v.num.Float64()
			_ = enc.EncodeFloat64(f)
		}
	case "bool":
		_ = enc.EncodeBool(v.b)
	default:
		_ = enc.EncodeNil()
	}
}

func rawOf(v jvalue) Raw {
	var buf bytes.Buffer
	packOrdered(msgpack.NewEncoder(&buf), v)
	return Raw(buf.Bytes())
}

// plain turns v into plain Go values (map[string]any, []any, int64, float64, string, bool, nil).
func plain(v jvalue) any {
	switch v.kind {
	case "object":
		m := map[string]any{}
		for k := range v.keys {
			m[v.keys[k]] = plain(v.vals[k])
		}
		return m
	case "array":
		a := []any{}
		for _, x := range v.vals {
			a = append(a, plain(x))
		}
		return a
	case "string":
		return v.str
	case "number":
		if n, err := v.num.Int64(); err == nil {
			return n
		}
		f, _ := v.num.Float64()
		return f
	case "bool":
		return v.b
	}
	return nil
}

// sortedKeys tells whether every object in v has its keys in increasing order
// (then the library's sorted encoding of plain values keeps the vector's order).
func sortedKeys(v jvalue) bool {
	for k := range v.vals {
		if v.kind == "object" && k > 0 && v.keys[k-1] >= v.keys[k] {
			return false
		}
		if !sortedKeys(v.vals[k]) {
			return false
		}
	}
	return true
}

// twin is a Failure built from a vector's JSON twin, and the same failure with
// the task and metadata as plain Go values when their key order allows it.
type twin struct {
	f      Failure
	plainF *Failure
}

// twinFromJSON fills a Failure from the JSON twin obj; an error says what the
// Go API cannot express (a task_id that is a number, a key outside the contract ...).
func twinFromJSON(obj jvalue) (*twin, error) {
	if obj.kind != "object" {
		return nil, fmt.Errorf("the envelope is a JSON %s", obj.kind)
	}
	if obj.dup {
		return nil, errors.New("a duplicate key")
	}
	tw := &twin{}
	f := &tw.f
	plainTask, plainMeta := any(nil), any(nil)
	plainOK := true
	for k, key := range obj.keys {
		v := obj.vals[k]
		switch key {
		case "task":
			if v.kind == "object" && len(v.keys) == 1 && v.keys[0] == "$bin" && v.vals[0].kind == "string" {
				b, err := base64.StdEncoding.DecodeString(v.vals[0].str)
				if err != nil {
					return nil, err
				}
				f.Task, plainTask = b, b
			} else {
				f.Task = rawOf(v)
				plainTask = plain(v)
				plainOK = plainOK && sortedKeys(v) && v.kind != "null"
			}
		case "metadata":
			if v.kind != "null" {
				f.Metadata = rawOf(v)
				plainMeta = plain(v)
				plainOK = plainOK && sortedKeys(v)
			}
		case "repos":
			if v.kind != "array" {
				return nil, errors.New("repos is not an array")
			}
			for _, r := range v.vals {
				if r.kind != "string" {
					return nil, errors.New("a repos entry is not a string")
				}
				f.Repos = append(f.Repos, r.str)
			}
		case "max_retries":
			if v.kind == "null" {
				continue
			}
			n, err := v.num.Int64()
			if v.kind != "number" || err != nil {
				return nil, errors.New("max_retries is not an integer")
			}
			f.MaxRetries = Retries(int(n))
		case "failed_at":
			switch v.kind {
			case "null":
			case "number":
				n, err := v.num.Int64()
				if err != nil {
					return nil, err
				}
				f.FailedAt = time.UnixMilli(n)
			case "string":
				at, err := time.Parse(time.RFC3339Nano, v.str)
				if err != nil {
					return nil, fmt.Errorf("failed_at %q is not a time.Time", v.str)
				}
				f.FailedAt = at
			default:
				return nil, errors.New("failed_at is neither a number nor a string")
			}
		case "enqueue":
			if v.kind != "bool" {
				return nil, errors.New("enqueue is not a boolean")
			}
			f.Enqueue = v.b
		case "task_id", "error", "error_type", "error_category", "retry_policy", "retry_subject":
			if v.kind != "string" && v.kind != "null" {
				return nil, fmt.Errorf("%s is a JSON %s", key, v.kind)
			}
			slot := map[string]*string{"task_id": &f.TaskID, "error": &f.Error, "error_type": &f.ErrorType,
				"error_category": &f.ErrorCategory, "retry_policy": &f.RetryPolicy, "retry_subject": &f.RetrySubject}[key]
			*slot = v.str // null: "", absent
		default:
			return nil, fmt.Errorf("the key %q is outside the contract", key)
		}
	}
	if plainOK && f.Task != nil {
		g := tw.f
		g.Task = plainTask
		if g.Metadata != nil {
			g.Metadata = plainMeta
		}
		tw.plainF = &g
	}
	return tw, nil
}

// failureFromMsgpack reads the envelopes without a JSON twin that the Go API
// can express: task_id, error as strings, the task as Raw bytes (the rest of
// the input when its value does not walk: truncated, reserved byte).
func failureFromMsgpack(b []byte) (*Failure, error) {
	n, ok := mpMapLen(b)
	if !ok {
		return nil, errors.New("not a map")
	}
	head, _, _, _ := mpHead(b)
	pos := head
	f := &Failure{}
	for k := 0; k < n; k++ {
		used, reason, _ := mpWalk(b[pos:], 64)
		if reason != "" {
			return nil, errors.New("a key does not walk")
		}
		var key string
		if err := msgpack.Unmarshal(b[pos:pos+used], &key); err != nil {
			return nil, errors.New("a key is not a string")
		}
		pos += used
		vlen, reason, _ := mpWalk(b[pos:], 64)
		if reason != "" {
			vlen = len(b) - pos
		}
		val := b[pos : pos+vlen]
		pos += vlen
		switch key {
		case "task":
			f.Task = Raw(val)
		case "task_id", "error":
			var s string
			if err := msgpack.Unmarshal(val, &s); err != nil {
				return nil, fmt.Errorf("%s is not a string", key)
			}
			if key == "task_id" {
				f.TaskID = s
			} else {
				f.Error = s
			}
		default:
			return nil, fmt.Errorf("the key %q", key)
		}
	}
	if pos != len(b) {
		return nil, errors.New("bytes after the map")
	}
	return f, nil
}

// goCannotSay lists the vectors whose exact message the Go API cannot give:
// a TaskID of "" is both "missing" and "empty" (and nil).
var goCannotSay = map[string]bool{"task_id_empty": true, "task_id_nil": true}

// TestVectorsEnvelopes: every canonical valid envelope encodes to the
// vector's exact bytes (again from plain Go values when their key order
// allows); every other valid one the Go API can express is accepted; a valid
// one the client refuses, and every invalid one the Go API can express, is
// refused before publishing with the manifest's field and reason (and its
// message, when it holds no byte offset).
func TestVectorsEnvelopes(t *testing.T) {
	m := loadManifest(t)
	wantOrder := []string{"task_id", "task", "error", "error_type", "error_category", "retry_policy",
		"max_retries", "retry_subject", "repos", "metadata", "failed_at", "enqueue",
		"backoff", "template", "priority", "depends_on"}
	if strings.Join(m.KeyOrder, ",") != strings.Join(wantOrder, ",") {
		t.Errorf("key_order: the manifest says %v, Encode writes %v", m.KeyOrder, wantOrder)
	}
	var encoded, plainEncoded, accepted, refused, fromMsgpack int
	var skipped []string
	for _, v := range m.Envelopes {
		var f *Failure
		var plainF *Failure
		if v.JSON != nil {
			obj, err := parseJSONBytes(readVector(t, *v.JSON))
			if err != nil {
				t.Fatalf("%s: %s: %v", v.Name, *v.JSON, err)
			}
			tw, err := twinFromJSON(obj)
			if err != nil {
				if v.Valid && (v.Canonical || v.ClientRefuses != nil) {
					t.Errorf("vector %s: canonical, but the Go API cannot express it: %v", v.Name, err)
				}
				skipped = append(skipped, v.Name+" ("+err.Error()+")")
				continue
			}
			f, plainF = &tw.f, tw.plainF
		} else {
			var err error
			if f, err = failureFromMsgpack(readVector(t, v.Msgpack)); err != nil {
				skipped = append(skipped, v.Name+" ("+err.Error()+")")
				continue
			}
			fromMsgpack++
		}
		got, err := Encode(*f)
		switch {
		case v.Valid && v.ClientRefuses == nil && v.Canonical:
			want := readVector(t, v.Msgpack)
			if err != nil {
				t.Errorf("vector %s: refused: %v", v.Name, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("vector %s: the client's bytes differ from the vector's\n got %s\nwant %s", v.Name, hex.EncodeToString(got), hex.EncodeToString(want))
			}
			encoded++
			if plainF != nil {
				again, err := Encode(*plainF)
				if err != nil || !bytes.Equal(again, want) {
					t.Errorf("vector %s: from plain Go values: %v\n got %s\nwant %s", v.Name, err, hex.EncodeToString(again), hex.EncodeToString(want))
				}
				plainEncoded++
			}
		case v.Valid && v.ClientRefuses == nil:
			if err != nil {
				t.Errorf("vector %s: a valid envelope is refused: %v", v.Name, err)
			}
			accepted++
		default:
			field, reason, why := v.Field, v.Reason, v.Why
			if v.ClientRefuses != nil {
				field, reason, why = v.ClientRefuses.Field, v.ClientRefuses.Reason, ""
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) {
				t.Errorf("vector %s: want a refusal naming %s (%s), got %v and %d bytes", v.Name, field, reason, err, len(got))
				continue
			}
			if ee.Field != field || ee.Reason != reason {
				t.Errorf("vector %s: want field %s reason %s, got %s %s (%s)", v.Name, field, reason, ee.Field, ee.Reason, ee.Message)
			}
			if !strings.HasPrefix(ee.Message, field+": ") {
				t.Errorf("vector %s: the message must name the field first: %s", v.Name, ee.Message)
			}
			if why != "" && !strings.Contains(why, "at byte") && !goCannotSay[v.Name] && ee.Message != why {
				t.Errorf("vector %s: message: want %q (the sidecar's), got %q", v.Name, why, ee.Message)
			}
			if got != nil {
				t.Errorf("vector %s: a refused envelope wrote %d bytes", v.Name, len(got))
			}
			refused++
		}
	}
	t.Logf("%d encoded byte for byte (%d again from plain Go values), %d other valid ones accepted, %d refused as the manifest says (%d read from MessagePack), %d not expressible with the Go API: %s",
		encoded, plainEncoded, accepted, refused, fromMsgpack, len(skipped), strings.Join(skipped, "; "))
	if encoded < 11 || refused < 20 || plainEncoded < 5 || fromMsgpack < 3 {
		t.Errorf("too few vectors checked: %d encoded, %d from plain values, %d refused, %d from MessagePack", encoded, plainEncoded, refused, fromMsgpack)
	}
}

// TestVectorsOutcomes: the canonical outcomes are the bytes a worker
// replies, and every outcome decodes as the manifest says.
func TestVectorsOutcomes(t *testing.T) {
	m := loadManifest(t)
	var canonical int
	for _, o := range m.Outcomes {
		body := readVector(t, o.File)
		wantType := ""
		if o.ErrorType != nil {
			wantType = *o.ErrorType
		}
		got := DecodeOutcome(body)
		if got.OK != o.OK || (!o.OK && (got.Error != o.Error || got.ErrorType != wantType)) {
			t.Errorf("outcome %s: want ok=%v error=%q error_type=%q, got %+v", o.Name, o.OK, o.Error, wantType, got)
		}
		if !o.Canonical {
			continue
		}
		var reply []byte
		if o.OK {
			reply = EncodeOutcome(nil)
		} else {
			reply = EncodeOutcome(&Error{Type: wantType, Message: o.Error})
		}
		if !bytes.Equal(reply, body) {
			t.Errorf("outcome %s: a worker replies %s, the vector is %s", o.Name, reply, body)
		}
		if back := DecodeOutcome(reply); back.OK != o.OK || back.Error != o.Error || back.ErrorType != wantType {
			t.Errorf("outcome %s: the reply reads back as %+v", o.Name, back)
		}
		canonical++
	}
	if canonical < 3 || len(m.Outcomes) < 15 {
		t.Errorf("only %d canonical outcomes of %d", canonical, len(m.Outcomes))
	}
}
