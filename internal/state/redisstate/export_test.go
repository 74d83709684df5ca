package redisstate

// Waiting is how many local callers wait on key (tests).
func (b *Budget) Waiting(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[key]; q != nil {
		return len(q.waiters)
	}
	return 0
}
