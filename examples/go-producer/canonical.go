// Package main is a proposal producer in Go: it builds an envelope, encodes it canonically, signs it
// with the agent's own HMAC key and sends it to the proposals topic with franz-go.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Canonical is the byte string a signature covers: keys sorted by code point at every level, no
// whitespace, UTF-8 as is, only '"', '\' and the C0 controls escaped (the validator's encoder).
// encoding/json cannot be used: it always escapes U+2028, U+2029 and, by default, < > &.
func Canonical(value any) ([]byte, error) {
	var out bytes.Buffer
	if err := write(&out, value); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func write(out *bytes.Buffer, value any) error {
	switch v := value.(type) {
	case nil:
		out.WriteString("null")
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case json.Number: // decoded with UseNumber: integers keep every digit
		if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
			return fmt.Errorf("not an integer: %s (amounts are integers)", v)
		}
		out.WriteString(string(v))
	case int64:
		out.WriteString(strconv.FormatInt(v, 10))
	case int:
		out.WriteString(strconv.Itoa(v))
	case string:
		return writeString(out, v)
	case []any:
		out.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				out.WriteByte(',')
			}
			if err := write(out, item); err != nil {
				return err
			}
		}
		out.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order of UTF-8 is code-point order
		out.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				out.WriteByte(',')
			}
			if err := writeString(out, k); err != nil {
				return err
			}
			out.WriteByte(':')
			if err := write(out, v[k]); err != nil {
				return err
			}
		}
		out.WriteByte('}')
	default:
		return fmt.Errorf("cannot encode %T canonically", value)
	}
	return nil
}

var shortEscapes = map[rune]string{'"': `\"`, '\\': `\\`, '\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`}

func writeString(out *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("text is not UTF-8")
	}
	out.WriteByte('"')
	for _, r := range s {
		if esc, ok := shortEscapes[r]; ok {
			out.WriteString(esc)
		} else if r < 0x20 {
			fmt.Fprintf(out, `\u%04x`, r)
		} else {
			out.WriteRune(r)
		}
	}
	out.WriteByte('"')
	return nil
}
