package capture

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func TestP3_SelectKeepsTheBestAboveTheFloor(t *testing.T) {
	cands := []Candidate{
		{PhotoID: "a", Score: 0.9, TakenAt: t0, PHash: 0x0},
		{PhotoID: "b", Score: 0.2, TakenAt: t0.Add(3 * time.Hour), PHash: 0xFFFF_0000_0000_0000},
		{PhotoID: "c", Score: 0.6, TakenAt: t0.Add(5 * time.Hour), PHash: 0x0000_FFFF_0000_0000},
		{PhotoID: "d", Score: 0.7, TakenAt: t0.Add(8 * time.Hour), PHash: 0x0000_0000_FFFF_0000},
	}
	kept, deleted := Select(cands, 2, 0.25)
	if !slices.Equal(kept, []string{"a", "d"}) {
		t.Fatalf("kept %v, want [a d]", kept)
	}
	slices.Sort(deleted)
	if !slices.Equal(deleted, []string{"b", "c"}) {
		t.Fatalf("deleted %v", deleted)
	}
	// Below the floor nothing is kept even when there is room.
	kept, _ = Select(cands, 10, 0.65)
	if !slices.Equal(kept, []string{"a", "d"}) {
		t.Fatalf("with min_score 0.65 kept %v", kept)
	}
	if kept, deleted := Select(cands, 0, 0); len(kept) != 0 || len(deleted) != 4 {
		t.Fatalf("keep 0: kept %v deleted %v", kept, deleted)
	}
}

func TestP3_NearDuplicatesCountOnce(t *testing.T) {
	cands := []Candidate{
		{PhotoID: "burst-1", Score: 0.8, TakenAt: t0, PHash: 0xF0F0_F0F0_F0F0_F0F0},
		{PhotoID: "burst-2", Score: 0.85, TakenAt: t0.Add(2 * time.Second), PHash: 0xF0F0_F0F0_F0F0_F0F1},
		{PhotoID: "other", Score: 0.5, TakenAt: t0.Add(4 * time.Hour), PHash: 0x0F0F_0F0F_0F0F_0F0F},
	}
	kept, _ := Select(cands, 3, 0.25)
	if !slices.Equal(kept, []string{"burst-2", "other"}) {
		t.Fatalf("kept %v, want the better of the burst and the other photo", kept)
	}
}

func TestP3_PicksSpreadOverTheDay(t *testing.T) {
	// Three good photos within a minute of each other and one nearly as
	// good in the afternoon: two picks take one moment each.
	cands := []Candidate{
		{PhotoID: "m1", Score: 0.80, TakenAt: t0, PHash: 0x1},
		{PhotoID: "m2", Score: 0.79, TakenAt: t0.Add(20 * time.Second), PHash: 0xFFFF_FFFF},
		{PhotoID: "m3", Score: 0.78, TakenAt: t0.Add(40 * time.Second), PHash: 0xFFFF_FFFF_0000_0000},
		{PhotoID: "pm", Score: 0.70, TakenAt: t0.Add(6 * time.Hour), PHash: 0x5555_5555_5555_5555},
	}
	kept, _ := Select(cands, 2, 0.25)
	if !slices.Equal(kept, []string{"m1", "pm"}) {
		t.Fatalf("kept %v, want [m1 pm]", kept)
	}
}
