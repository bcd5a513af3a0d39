package localrun

import (
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// The runner plugs into the engine, and the engine and a store plug into the runner.
var (
	_ engine.Runner = (*Runner)(nil)
	_ Reporter      = (*engine.Engine)(nil)
	_ Stepper       = (*engine.Engine)(nil)
	_ DeviceLister  = task.Store(nil)
)
