// Package descriptor decides whether a face is an enrolled person or a
// stranger, from 128-D face descriptors the vision worker computes
// (internal/facenet: face-api's port of dlib's ResNet on a landmark-aligned
// chip). It owns the descriptor's binary form, the gallery of enrolled
// people and the open-set decision, and is the facerec.Recognizer of the
// daemon.
//
// It is pure Go and never touches pixels, the store or the network: it
// sees only descriptors, which it never logs.
package descriptor
