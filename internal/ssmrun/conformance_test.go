package ssmrun_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/engine/runnertest"
	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestRunnerConformance runs the runner conformance suite against the SSM runner, talking to
// the SSM test server over the wire with the real SDK client.
func TestRunnerConformance(t *testing.T) {
	t.Parallel()
	runnertest.Run(t, func(t *testing.T) runnertest.Target {
		return &ssmTarget{srv: ssmtest.Start(t), log: ssmrun.NewMemoryLog()}
	})
}

// ssmTarget is the SSM runner on one test server. The command log stands for the DynamoDB
// table and, like it, outlives a restart of the runner.
type ssmTarget struct {
	srv *ssmtest.Server
	log *ssmrun.MemoryLog
}

func (s *ssmTarget) DeviceIDs(n int) []string { return devices(n) }

func (s *ssmTarget) Rules() task.Rules {
	return task.Rules{DeviceID: task.ManagedNodeID, CheckScript: ssmcmd.CheckScript([]string{"fleet-scripts"})}
}

// Script scripts each device on the server. A device answers ListCommandInvocations in
// progress for Polls calls, then with its outcome.
func (s *ssmTarget) Script(t *testing.T, behave map[string]runnertest.Behaviour) string {
	for id, b := range behave {
		sc := ssmtest.Script{Stdout: b.Stdout, Stderr: b.Stderr}
		switch b.Outcome {
		case runnertest.Succeed:
			sc.Outcome = ssmtest.Success
		case runnertest.Fail:
			sc.Outcome, sc.ExitCode = ssmtest.Failed, b.ExitCode
		case runnertest.Hang:
			sc.Outcome = ssmtest.Never
		case runnertest.Slow:
			sc.Outcome, sc.Polls = ssmtest.Success, 3
		}
		s.srv.Script(id, sc)
	}
	return "s3://fleet-scripts/ops/patch.sh"
}

func (s *ssmTarget) Start(t *testing.T, env runnertest.Env) engine.Runner {
	s.srv.SetNow(env.Now)
	return ssmrun.New(ssmrun.Config{API: s.srv.Client(), CommandLog: s.log, AllowedBuckets: []string{"fleet-scripts"}, Now: env.Now})
}

// Stop does nothing: the runner holds no work of its own; the commands run on SSM.
func (s *ssmTarget) Stop(*testing.T, engine.Runner) {}

// Starts counts the commands sent to device id.
func (s *ssmTarget) Starts(t *testing.T, id string) int {
	n := 0
	for _, c := range s.srv.Commands() {
		if slices.Contains(c.InstanceIDs, id) {
			n++
		}
	}
	return n
}

// StoppedAlone checks that SSM ended the device's invocation Cancelled, and that every
// CancelCommand so far named exactly that one instance.
func (s *ssmTarget) StoppedAlone(t *testing.T, d *task.Device) error {
	cancels := s.srv.Cancels()
	if len(cancels) == 0 {
		return fmt.Errorf("no CancelCommand for %s yet", d.ID)
	}
	for _, c := range cancels {
		if !slices.Equal(c.InstanceIDs, []string{d.ID}) {
			return fmt.Errorf("a CancelCommand of %s named %v, want exactly [%s]", c.CommandID, c.InstanceIDs, d.ID)
		}
	}
	if st, ok := s.srv.Invocation(d.Ref, d.ID); !ok || st.Status != ssmtest.StatusCancelled {
		return fmt.Errorf("the invocation of %s on %s is %+v, want Cancelled", d.Ref, d.ID, st)
	}
	return nil
}

func (s *ssmTarget) Expect() runnertest.Expect {
	// ListCommandInvocations keeps 2,500 characters of output, ending a cut one with a marker;
	// a restarted runner finds its commands in the log and SSM, and the device runs on.
	return runnertest.Expect{StdoutLimit: ssmtest.PluginOutputLimit - len(ssmtest.TruncatedMarker),
		AfterRestart: task.DeviceSucceeded}
}
