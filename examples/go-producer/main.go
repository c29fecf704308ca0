// go-producer: sign and send one proposal, or check the published test vectors.
//
//	go-producer vectors ../../schemas/vectors/proposals.json
//	go-producer send -bootstrap HOST:PORT -topic grid.proposals -key-file AGENT.g0.key [-user U -password-file F] < envelope.json
//
// send reads an unsigned envelope (v, id, agent, nonce, tick, expires_tick, body) on stdin, signs its
// canonical bytes with the agent's HMAC key (the key file `gridgov keys issue AGENT` writes; the
// envelope's agent must be the file's) and produces it with acks=all; it prints the partition and
// offset. The validator decides it like any other proposal.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const sendTimeout = 30 * time.Second

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-producer vectors FILE | go-producer send [flags] < envelope.json")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "vectors":
		err = checkVectorsFile(os.Args[2:])
	case "send":
		err = send(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-producer:", err)
		os.Exit(1)
	}
}

// decodeJSON keeps integers exact (json.Number) and refuses trailing data.
func decodeJSON(raw []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func send(args []string) error {
	flags := flag.NewFlagSet("send", flag.ExitOnError)
	bootstrap := flags.String("bootstrap", "127.0.0.1:59092", "Kafka bootstrap address")
	topic := flags.String("topic", "grid.proposals", "the proposals topic")
	keyFile := flags.String("key-file", "", "the agent's key file (gridgov keys issue AGENT)")
	user := flags.String("user", "", "SASL/SCRAM-SHA-256 user (the producer principal)")
	passwordFile := flags.String("password-file", "", "a file holding its password (GRID_HOME/credentials/kafka-producer)")
	flags.Parse(args)
	agent, key, err := loadKeyFile(*keyFile)
	if err != nil {
		return err
	}
	password, err := readPassword(*passwordFile)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		return err
	}
	var envelope map[string]any
	if err := decodeJSON(raw, &envelope); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	if envelope["agent"] != agent {
		return fmt.Errorf("the envelope's agent %v is not the key file's %q", envelope["agent"], agent)
	}
	delete(envelope, "sig")
	canonical, err := Canonical(envelope)
	if err != nil {
		return err
	}
	message, err := Canonical(Signed(envelope, SignHMAC(key, canonical)))
	if err != nil {
		return err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(*bootstrap), kgo.RequiredAcks(kgo.AllISRAcks())}
	if *user != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: *user, Pass: password}.AsSha256Mechanism()))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	record := &kgo.Record{Topic: *topic, Value: message}
	if err := client.ProduceSync(ctx, record).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	fmt.Printf("sent %s to %s partition %d offset %d\n", envelope["id"], *topic, record.Partition, record.Offset)
	return nil
}

// loadKeyFile reads {"v":1,"agent":…,"generation":…,"key":hex,"fingerprint":…} and checks the
// fingerprint (SHA-256 of the key, first 16 bytes in hex) as the Python loader does.
func loadKeyFile(path string) (string, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("-key-file: %w", err)
	}
	var record struct {
		V           int    `json:"v"`
		Agent       string `json:"agent"`
		Key         string `json:"key"`
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.Unmarshal(raw, &record); err != nil {
		return "", nil, fmt.Errorf("%s: not a key file: %w", path, err)
	}
	key, err := hex.DecodeString(record.Key)
	digest := sha256.Sum256(key)
	if err != nil || len(key) != 32 || record.V != 1 || hex.EncodeToString(digest[:16]) != record.Fingerprint {
		return "", nil, fmt.Errorf("%s: the key does not match its fingerprint or format", path)
	}
	return record.Agent, key, nil
}

func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-password-file: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}
