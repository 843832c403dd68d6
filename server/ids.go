package server

import "github.com/google/uuid"

// newDecisionID names one decision in responses, logs and metrics. A
// random UUID: unguessable, and unique across replicas without
// coordination.
func newDecisionID() string { return uuid.NewString() }

// A pool of randomness spares a crypto/rand read per id; ids stay random
// v4 UUIDs.
func init() { uuid.EnableRandPool() }
