package openapicheck

import "testing"

func BenchmarkLoadDefault(b *testing.B) {
	for b.Loop() {
		if _, err := LoadDefault(); err != nil {
			b.Fatal(err)
		}
	}
}
