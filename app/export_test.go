package app

// WaitHostChecks waits for the egress checks running in the background (tests only).
func (s *Service) WaitHostChecks() { s.checks.Wait() }

// CheckSlot exposes checkSlot (tests only).
var CheckSlot = checkSlot
