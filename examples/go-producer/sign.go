package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// AgentKey is the HMAC key the validator derives for agent at generation (tests only: a participant
// is handed its key, it never holds the root secret).
func AgentKey(root []byte, agent string, generation int) []byte {
	label := "grid-agent-key:" + agent
	if generation > 0 {
		label += "\x00" + strconv.Itoa(generation)
	}
	mac := hmac.New(sha256.New, root)
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// SignHMAC is a participant's or the meter's signature of the canonical bytes, in hex.
func SignHMAC(key, canonical []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(canonical)
	return hex.EncodeToString(mac.Sum(nil))
}

// SignEd25519 is an operator's signature of the canonical bytes, in hex.
func SignEd25519(seed, canonical []byte) string {
	return hex.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(seed), canonical))
}

// Signed is the envelope with "sig" added: what goes on the topic.
func Signed(envelope map[string]any, sig string) map[string]any {
	out := make(map[string]any, len(envelope)+1)
	for k, v := range envelope {
		out[k] = v
	}
	out["sig"] = sig
	return out
}
