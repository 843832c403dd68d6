package server

import "github.com/google/uuid"

// newDecisionID names one decision in responses, logs and metrics. A
// random UUID: unguessable, and unique across replicas without
// coordination.
func newDecisionID() string { return uuid.NewString() }
