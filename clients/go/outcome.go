// outcome.go - the outcome of a retry (DESIGN section 6): the reply a worker writes, and how the sidecar reads one.

package dlq

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// outcome is the reply body of DESIGN section 6.
type outcome struct {
	OK        bool    `json:"ok"`
	Error     *string `json:"error,omitempty"`
	ErrorType *string `json:"error_type,omitempty"`
}

// EncodeOutcome returns the reply body a worker sends for a handler's
// result (DESIGN section 6): {"ok":true} for nil, else
// {"ok":false,"error":<message>,"error_type":<ErrorType(err)>}, the bytes
// of the canonical outcome vectors. The message is made valid UTF-8 and
// cut to 4096 bytes (with "...[truncated]"), the type to 1024; an empty
// message says so; an empty type is left out.
func EncodeOutcome(err error) []byte {
	if err == nil {
		return []byte(`{"ok":true}`)
	}
	msg := err.Error()
	if msg == "" {
		msg = "worker handler failed without a message"
	}
	msg = cleanText(msg, MaxErrorLen, truncatedMarker)
	o := outcome{Error: &msg}
	if t := cleanText(ErrorType(err), MaxStringLen, ""); t != "" {
		o.ErrorType = &t
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(o) != nil { // cannot happen: strings only
		return []byte(`{"ok":false,"error":"worker reply could not be encoded","error_type":"dlq.InvalidHandlerResult"}`)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Outcome is what a worker's reply to a retry says (DESIGN section 6).
type Outcome struct {
	OK        bool   // success: the task completes
	Error     string // a failed attempt's error ("" when none was given)
	ErrorType string // its error_type, "" when absent
}

// DecodeOutcome reads a worker's reply body as the sidecar does: empty or
// blank is success; a body starting with '{' is JSON, any other
// MessagePack; a map with a boolean "ok" is the answer, its "error" a
// string (or bin), an object whose "message" is the error, or any other
// value rendered as JSON text; anything else is a failure whose error is
// "unrecognised reply" (a map without a boolean ok, a non-map) or
// "malformed reply" (does not parse). For a program that calls a worker
// itself, and for the tests of the shared vectors.
func DecodeOutcome(body []byte) Outcome {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(bytes.TrimRight(trimmed, " \t\r\n")) == 0 {
		return Outcome{OK: true}
	}
	unrecognised := Outcome{Error: "unrecognised reply"}
	malformed := Outcome{Error: "malformed reply"}
	var fields map[string]any
	if trimmed[0] == '{' {
		if !jsonStrict(body, MaxDepth) {
			return malformed
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil || dec.More() {
			return malformed
		}
		fields, _ = v.(map[string]any)
	} else {
		if used, reason, _ := mpWalk(body, MaxDepth); reason != "" || used != len(body) {
			return malformed
		}
		if _, isMap := mpMapLen(body); !isMap {
			return unrecognised
		}
		if msgpack.Unmarshal(body, &fields) != nil {
			return malformed
		}
	}
	ok, isBool := fields["ok"].(bool)
	if fields == nil || !isBool {
		return unrecognised
	}
	if ok {
		return Outcome{OK: true}
	}
	o := Outcome{}
	switch e := fields["error"].(type) {
	case nil:
	case string:
		o.Error = e
	case []byte:
		o.Error = string(e)
	default:
		if m, isMap := e.(map[string]any); isMap {
			if s, isStr := m["message"].(string); isStr {
				o.Error = s
				break
			}
		}
		text, _ := json.Marshal(e)
		o.Error = string(text)
	}
	o.Error = cleanText(o.Error, MaxErrorLen, truncatedMarker)
	if t, isStr := fields["error_type"].(string); isStr {
		o.ErrorType = cut(t, MaxStringLen)
	}
	return o
}

// jsonStrict reports whether the JSON text b reads as the sidecar's jansson
// reads it: valid UTF-8, no object giving a key twice, no escaped lone
// surrogate ("\ud800"), and arrays/objects nested at most maxDepth deep
// (the outermost one is level 1). It does not check the grammar itself
// (encoding/json does that next).
func jsonStrict(b []byte, maxDepth int) bool {
	if !utf8.Valid(b) || !escapesPaired(b) {
		return false
	}
	type frame struct {
		obj  bool
		key  bool // an object: the next token is a key
		keys map[string]struct{}
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return true // the end, or a syntax error encoding/json reports next
		}
		if n := len(stack); n > 0 && stack[n-1].obj {
			top := &stack[n-1]
			if d, isDelim := tok.(json.Delim); isDelim && d == '}' {
				stack = stack[:n-1]
				continue
			}
			if top.key {
				k, _ := tok.(string)
				if _, seen := top.keys[k]; seen {
					return false
				}
				top.keys[k] = struct{}{}
				top.key = false
				continue
			}
			top.key = true
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return false
			}
			stack = append(stack, frame{obj: tok == json.Delim('{'), key: true, keys: map[string]struct{}{}})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// escapesPaired reports whether every \uD800-\uDFFF escape in the JSON
// strings of b is half of a high-low surrogate pair.
func escapesPaired(b []byte) bool {
	hex4 := func(i int) (uint64, bool) {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		return v, err == nil
	}
	inStr := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inStr:
			inStr = b[i] == '"'
		case b[i] == '"':
			inStr = false
		case b[i] == '\\':
			v, isU := hex4(i)
			if !isU {
				i++ // an escaped character
				continue
			}
			switch {
			case v >= 0xD800 && v < 0xDC00:
				if w, next := hex4(i + 6); !next || w < 0xDC00 || w > 0xDFFF {
					return false
				}
				i += 11
			case v >= 0xDC00 && v <= 0xDFFF:
				return false
			default:
				i += 5
			}
		}
	}
	return true
}
