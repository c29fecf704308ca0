package main

import (
	"os"
	"testing"
)

func TestPublishedVectors(t *testing.T) {
	raw, err := os.ReadFile("../../schemas/vectors/proposals.json")
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := decodeJSON(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 15 {
		t.Fatalf("only %d vectors", len(file.Vectors))
	}
	for _, problem := range CheckVectors(file) {
		t.Error(problem)
	}
}

func TestAFloatIsRefused(t *testing.T) {
	var value map[string]any
	if err := decodeJSON([]byte(`{"quantity": 1.5}`), &value); err != nil {
		t.Fatal(err)
	}
	if _, err := Canonical(value); err == nil {
		t.Fatal("a float was encoded")
	}
}
