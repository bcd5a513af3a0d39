package ssmtest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// command is an accepted SendCommand and its invocations, one per instance id.
type command struct {
	commandJSON
	seq         int
	requested   time.Time
	cancelled   bool
	invocations []*invocation
}

// Validation rules of the SSM API model.
var (
	instanceIDRule     = regexp.MustCompile(`^(i-(\w{8}|\w{17})|mi-\w{17})$`)
	documentNameRule   = regexp.MustCompile(`^[a-zA-Z0-9_\-.:/]{3,128}$`)
	maxConcurrencyRule = regexp.MustCompile(`^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$`)
	maxErrorsRule      = regexp.MustCompile(`^([1-9][0-9]*|0|[1-9][0-9]%|[0-9]%|100%)$`)
	executionTimeout   = regexp.MustCompile(`^[1-9][0-9]{0,5}$`)
)

// remoteScriptParameters are the parameters AWS-RunRemoteScript accepts.
var remoteScriptParameters = []string{"sourceType", "sourceInfo", "commandLine", "workingDirectory", "executionTimeout"}

func (s *Server) sendCommand(body []byte) (any, *apiError) {
	var req sendCommandRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if !documentNameRule.MatchString(req.DocumentName) {
		return nil, clientError("ValidationException", "1 validation error detected: Value %q at 'documentName' failed to satisfy constraint", req.DocumentName)
	}
	if len(req.Targets) > 0 {
		return nil, clientError("ValidationException", "ssmtest supports InstanceIds, not Targets")
	}
	switch n := len(req.InstanceIds); {
	case n == 0:
		return nil, clientError("ValidationException", "either InstanceIds or Targets must be given")
	case n > 50:
		return nil, clientError("ValidationException", "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	if len(req.Comment) > 100 {
		return nil, clientError("ValidationException", "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100")
	}
	timeout := 3600
	if req.TimeoutSeconds != nil {
		timeout = *req.TimeoutSeconds
		if timeout < 30 || timeout > 2592000 {
			return nil, clientError("ValidationException", "1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", timeout)
		}
	}
	if req.MaxConcurrency == "" {
		req.MaxConcurrency = "50"
	}
	if !maxConcurrencyRule.MatchString(req.MaxConcurrency) {
		return nil, clientError("ValidationException", "1 validation error detected: Value %q at 'maxConcurrency' failed to satisfy constraint", req.MaxConcurrency)
	}
	if req.MaxErrors == "" {
		req.MaxErrors = "0"
	}
	if !maxErrorsRule.MatchString(req.MaxErrors) {
		return nil, clientError("ValidationException", "1 validation error detected: Value %q at 'maxErrors' failed to satisfy constraint", req.MaxErrors)
	}
	if req.DocumentName == RemoteScriptDocument {
		if err := checkRemoteScript(req.Parameters); err != nil {
			return nil, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var invalid []string
	for _, id := range req.InstanceIds {
		if seen[id] {
			return nil, clientError("DuplicateInstanceId", "instance %s is listed twice", id)
		}
		seen[id] = true
		if !instanceIDRule.MatchString(id) || s.script(id).Outcome == Invalid {
			invalid = append(invalid, id)
		}
	}
	if len(invalid) > 0 {
		return nil, clientError("InvalidInstanceId", "Instances [%s] not in a valid state for account %s", strings.Join(invalid, ", "), Account)
	}

	now := s.now().UTC()
	s.seq++
	c := &command{seq: s.seq, requested: now}
	c.commandJSON = commandJSON{
		CommandId: newUUID(), DocumentName: req.DocumentName, DocumentVersion: orDefault(req.DocumentVersion, "$DEFAULT"),
		Comment: req.Comment, ExpiresAfter: stamp(now.Add(time.Duration(timeout+executionSeconds(req.Parameters)) * time.Second)),
		Parameters: orEmpty(req.Parameters), InstanceIds: req.InstanceIds, Targets: []json.RawMessage{},
		RequestedDateTime: stamp(now), OutputS3Region: req.OutputS3Region, OutputS3BucketName: req.OutputS3BucketName,
		OutputS3KeyPrefix: req.OutputS3KeyPrefix, MaxConcurrency: req.MaxConcurrency, MaxErrors: req.MaxErrors,
		ServiceRole: req.ServiceRoleArn, TimeoutSeconds: timeout, CloudWatchOutputConfig: req.CloudWatchOutputConfig,
		NotificationConfig: notificationConfigJSON{NotificationEvents: []string{}},
	}
	if c.OutputS3BucketName != "" && c.OutputS3Region == "" {
		c.OutputS3Region = Region
	}
	for _, id := range req.InstanceIds {
		inv := &invocation{cmd: c, instanceID: id, script: s.script(id), status: StatusPending, details: StatusPending, code: -1}
		c.invocations = append(c.invocations, inv)
	}
	s.commands = append(s.commands, c)
	s.byID[c.CommandId] = c
	for _, inv := range c.invocations {
		s.recordEvent(inv)
	}
	return map[string]any{"Command": s.commandView(c)}, nil
}

func (s *Server) script(id string) Script {
	if sc, ok := s.scripts[id]; ok {
		return sc
	}
	return s.fallback
}

// checkRemoteScript validates parameters the way AWS-RunRemoteScript's parameter definitions do.
func checkRemoteScript(params map[string][]string) *apiError {
	for k, v := range params {
		if !slices.Contains(remoteScriptParameters, k) {
			return clientError("InvalidParameters", "parameter %q is not defined by %s", k, RemoteScriptDocument)
		}
		if len(v) != 1 {
			return clientError("InvalidParameters", "parameter %q takes exactly one value, got %d", k, len(v))
		}
	}
	one := func(k string) string {
		if v := params[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	switch one("sourceType") {
	case "S3", "GitHub":
	default:
		return clientError("InvalidParameters", "sourceType must be GitHub or S3, got %q", one("sourceType"))
	}
	var info struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal([]byte(one("sourceInfo")), &info); err != nil || info.Path == "" {
		return clientError("InvalidParameters", "sourceInfo must be a JSON object with a path, got %q", one("sourceInfo"))
	}
	if strings.TrimSpace(one("commandLine")) == "" {
		return clientError("InvalidParameters", "commandLine is required")
	}
	if t := one("executionTimeout"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || !executionTimeout.MatchString(t) || n > 172800 {
			return clientError("InvalidParameters", "executionTimeout must be a number of seconds from 1 to 172800, got %q", t)
		}
	}
	return nil
}

func executionSeconds(params map[string][]string) int {
	if v := params["executionTimeout"]; len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil {
			return n
		}
	}
	return 3600
}

// commandView is the command as ListCommands and SendCommand return it, with its status
// aggregated from its invocations.
func (s *Server) commandView(c *command) commandJSON {
	v := c.commandJSON
	v.TargetCount = len(c.invocations)
	open, success, pending := 0, 0, 0
	for _, inv := range c.invocations {
		switch {
		case !terminal(inv.status):
			open++
			if inv.status == StatusPending {
				pending++
			}
		case inv.status == StatusSuccess:
			success++
		}
		if terminal(inv.status) {
			v.CompletedCount++
		}
		switch {
		case inv.details == DetailsDeliveryTimedOut:
			v.DeliveryTimedOutCount++
		case inv.status == StatusFailed && inv.details != DetailsUndeliverable, inv.status == StatusTimedOut:
			v.ErrorCount++
		}
	}
	switch {
	case open > 0 && c.cancelled:
		v.Status = StatusCancelling
	case open > 0 && pending == open && v.CompletedCount == 0:
		v.Status = StatusPending
	case open > 0:
		v.Status = StatusInProgress
	case c.cancelled:
		v.Status = StatusCancelled
	case success == len(c.invocations):
		v.Status = StatusSuccess
	case v.ErrorCount > 0:
		v.Status = StatusFailed
	case v.DeliveryTimedOutCount > 0:
		v.Status = StatusTimedOut
	default:
		v.Status = StatusSuccess
	}
	v.StatusDetails = v.Status
	if v.Status == StatusInProgress {
		v.StatusDetails = "In Progress"
	}
	return v
}

func (s *Server) listCommands(body []byte) (any, *apiError) {
	var req listCommandsRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	keep, limit, after, aerr := req.query()
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.CommandId != "" && s.byID[req.CommandId] == nil {
		return nil, clientError("InvalidCommandId", "no command %s", req.CommandId)
	}
	// Newest first; the page token is the sequence number of the next command to return, so
	// commands sent while a caller pages do not shift its pages.
	var page []commandJSON
	next := ""
	for i := len(s.commands) - 1; i >= 0; i-- {
		c := s.commands[i]
		if after > 0 && c.seq > after {
			continue
		}
		if req.CommandId != "" && c.CommandId != req.CommandId {
			continue
		}
		if req.InstanceId != "" && !slices.Contains(c.InstanceIds, req.InstanceId) {
			continue
		}
		v := s.commandView(c)
		if !keep(c.requested, c.DocumentName, v.Status) {
			continue
		}
		if len(page) == limit {
			next = token(c.seq)
			break
		}
		page = append(page, v)
	}
	if page == nil {
		page = []commandJSON{}
	}
	out := map[string]any{"Commands": page}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

func (s *Server) listCommandInvocations(body []byte) (any, *apiError) {
	var req listCommandInvocationsRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	keep, limit, start, aerr := req.query()
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	// Invocations in a stable order (commands in the order sent, devices in the order given); the
	// page token is the index of the next one, and new commands only ever add to the end. A
	// command the service does not know yet simply has no invocations: the real API answers an
	// empty list rather than an error.
	var all []*invocation
	for _, c := range s.commands {
		if req.CommandId != "" && c.CommandId != req.CommandId {
			continue
		}
		for _, inv := range c.invocations {
			if req.InstanceId != "" && inv.instanceID != req.InstanceId {
				continue
			}
			all = append(all, inv)
		}
	}
	page := []commandInvocationJSON{}
	next := ""
	i := max(start, 0)
	for ; i < len(all); i++ {
		if len(page) == limit {
			next = token(i)
			break
		}
		inv := all[i]
		if inv.observe(now) {
			s.recordEvent(inv)
		}
		if !keep(inv.cmd.requested, inv.cmd.DocumentName, inv.status) {
			continue
		}
		page = append(page, s.invocationView(inv, req.Details))
	}
	out := map[string]any{"CommandInvocations": page}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

func (s *Server) invocationView(inv *invocation, details bool) commandInvocationJSON {
	c := inv.cmd
	v := commandInvocationJSON{CommandId: c.CommandId, InstanceId: inv.instanceID, Comment: c.Comment,
		DocumentName: c.DocumentName, DocumentVersion: c.DocumentVersion, RequestedDateTime: stamp(c.requested),
		Status: inv.status, StatusDetails: inv.details, CommandPlugins: []commandPluginJSON{},
		ServiceRole: c.ServiceRole, NotificationConfig: c.NotificationConfig}
	plugins := inv.plugins(Region)
	if details {
		v.CommandPlugins = plugins
	}
	if len(plugins) == 1 {
		v.StandardOutputUrl, v.StandardErrorUrl = plugins[0].StandardOutputUrl, plugins[0].StandardErrorUrl
	}
	return v
}

func (s *Server) getCommandInvocation(body []byte) (any, *apiError) {
	var req getCommandInvocationRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.CommandId == "" || req.InstanceId == "" {
		return nil, clientError("ValidationException", "CommandId and InstanceId are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invocation(req.CommandId, req.InstanceId)
	if inv == nil {
		return nil, clientError("InvocationDoesNotExist", "no invocation of command %s on %s", req.CommandId, req.InstanceId)
	}
	// Without a PluginName the script step answers; the real API insists on a name for
	// documents of several steps, which callers of AWS-RunRemoteScript should give anyway.
	plugins := inv.plugins(Region)
	plugin := plugins[len(plugins)-1]
	if req.PluginName != "" {
		i := slices.IndexFunc(plugins, func(p commandPluginJSON) bool { return p.Name == req.PluginName })
		if i < 0 {
			return nil, clientError("InvalidPluginName", "the document has no step named %q", req.PluginName)
		}
		plugin = plugins[i]
	}
	out := getCommandInvocationResponse{CommandId: req.CommandId, InstanceId: req.InstanceId,
		Comment: inv.cmd.Comment, DocumentName: inv.cmd.DocumentName, DocumentVersion: inv.cmd.DocumentVersion,
		PluginName: plugin.Name, ResponseCode: plugin.ResponseCode, Status: inv.status, StatusDetails: spaced(inv.details),
		StandardOutputUrl: plugin.StandardOutputUrl, StandardErrorUrl: plugin.StandardErrorUrl}
	if plugin.Name == scriptPlugin(inv.cmd.DocumentName) && inv.delivered() {
		out.StandardOutputContent = cut(inv.script.Stdout, StdoutLimit)
		out.StandardErrorContent = cut(inv.script.Stderr, StderrLimit)
	} else if plugin.Name != scriptPlugin(inv.cmd.DocumentName) {
		out.StandardOutputContent = plugin.Output
	}
	if inv.delivered() {
		out.ExecutionStartDateTime = inv.started.UTC().Format(time.RFC3339Nano)
		end := s.now().UTC()
		if !inv.finished.IsZero() {
			end = inv.finished.UTC()
			out.ExecutionEndDateTime = end.Format(time.RFC3339Nano)
		}
		out.ExecutionElapsedTime = fmt.Sprintf("PT%.3fS", end.Sub(inv.started).Seconds())
	}
	return out, nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Server) cancelCommand(body []byte) (any, *apiError) {
	var req cancelCommandRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.InstanceIds) > 50 {
		return nil, clientError("ValidationException", "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byID[req.CommandId]
	if c == nil {
		return nil, clientError("InvalidCommandId", "no command %s", req.CommandId)
	}
	seen := map[string]bool{}
	for _, id := range req.InstanceIds {
		if seen[id] {
			return nil, clientError("DuplicateInstanceId", "instance %s is listed twice", id)
		}
		seen[id] = true
		if !slices.Contains(c.InstanceIds, id) {
			return nil, clientError("InvalidInstanceId", "instance %s is not a target of command %s", id, c.CommandId)
		}
	}
	if len(req.InstanceIds) == 0 {
		c.cancelled = true
	}
	s.cancels = append(s.cancels, CancelRequest{CommandID: c.CommandId, InstanceIDs: append([]string(nil), req.InstanceIds...)})
	now := s.now().UTC()
	for _, inv := range c.invocations {
		if len(req.InstanceIds) > 0 && !seen[inv.instanceID] {
			continue
		}
		if inv.cancel(now) {
			s.recordEvent(inv)
		}
	}
	return map[string]any{}, nil
}
