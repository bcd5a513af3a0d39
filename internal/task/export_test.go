package task

// Inline exposes inline to the tests of package task_test.
var Inline = inline
