package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
)

type vectorFile struct {
	RootSecretHex string   `json:"root_secret_hex"`
	Vectors       []vector `json:"vectors"`
}

type vector struct {
	Name          string            `json:"name"`
	Input         map[string]any    `json:"input"`
	CanonicalHex  string            `json:"canonical_hex"`
	CanonicalUTF8 string            `json:"canonical_utf8"`
	Key           map[string]string `json:"key"`
	Sig           string            `json:"sig"`
	Message       string            `json:"message"`
}

func checkVectorsFile(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: go-producer vectors FILE")
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var file vectorFile
	if err := decodeJSON(raw, &file); err != nil {
		return err
	}
	failed := CheckVectors(file)
	for _, problem := range failed {
		fmt.Fprintln(os.Stderr, problem)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d vectors failed", len(failed), len(file.Vectors))
	}
	fmt.Printf("%d vectors: canonical bytes and signatures match\n", len(file.Vectors))
	return nil
}

// CheckVectors returns one line per mismatch: canonical bytes, key derivation, signature.
func CheckVectors(file vectorFile) []string {
	var problems []string
	root, _ := hex.DecodeString(file.RootSecretHex)
	for _, v := range file.Vectors {
		canonical, err := Canonical(v.Input)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", v.Name, err))
			continue
		}
		if hex.EncodeToString(canonical) != v.CanonicalHex || string(canonical) != v.CanonicalUTF8 {
			problems = append(problems, fmt.Sprintf("%s: canonical bytes differ:\n  got  %s\n  want %s", v.Name, canonical, v.CanonicalUTF8))
			continue
		}
		var sig string
		switch v.Key["algorithm"] {
		case "ed25519":
			seed, _ := hex.DecodeString(v.Key["seed_hex"])
			sig = SignEd25519(seed, canonical)
		case "hmac-sha256":
			generation, _ := strconv.Atoi(v.Key["generation"])
			key := AgentKey(root, v.Input["agent"].(string), generation)
			if hex.EncodeToString(key) != v.Key["key_hex"] {
				problems = append(problems, fmt.Sprintf("%s: derived key differs", v.Name))
				continue
			}
			sig = SignHMAC(key, canonical)
		default:
			problems = append(problems, fmt.Sprintf("%s: unknown algorithm %q", v.Name, v.Key["algorithm"]))
			continue
		}
		if sig != v.Sig {
			problems = append(problems, fmt.Sprintf("%s: signature differs", v.Name))
		}
		var message map[string]any
		if err := decodeJSON([]byte(v.Message), &message); err != nil || message["sig"] != v.Sig {
			problems = append(problems, fmt.Sprintf("%s: message does not carry the signature", v.Name))
		}
	}
	return problems
}
