//go:build race

package e2e

// raceEnabled slows memory-heavy tests down; they move less data under it.
const raceEnabled = true
