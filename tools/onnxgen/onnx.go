package main

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file writes the few ONNX messages the nets need (onnx.proto3, IR
// version 6, opset 11) straight with protowire: field numbers are those of
// onnx/onnx.proto. No ONNX library is needed for a graph of Conv, Relu,
// LeakyRelu, Add, Pad, pooling, Flatten, Gemm and Softmax.

// ONNX field numbers and enum values used below.
const (
	// ModelProto
	modelIRVersion    = 1
	modelProducerName = 2
	modelProducerVer  = 3
	modelGraph        = 7
	modelOpsetImport  = 8
	// OperatorSetIdProto
	opsetVersion = 2
	// GraphProto
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	// NodeProto
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	// AttributeProto
	attrName   = 1
	attrF      = 2
	attrI      = 3
	attrS      = 4
	attrInts   = 8
	attrType   = 20
	attrFloat  = 1
	attrInt    = 2
	attrString = 3
	attrINTS   = 7
	// TensorProto
	tensorDims     = 1
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9
	dtypeFloat     = 1
	dtypeInt64     = 7
	// ValueInfoProto / TypeProto / TensorShapeProto
	valueName       = 1
	valueType       = 2
	typeTensor      = 1
	tensorElemType  = 1
	tensorShape     = 2
	shapeDim        = 1
	dimValue        = 1
	irVersion       = 6
	opset           = 11
	producerName    = "aibo-privacyd tools/onnxgen"
	producerVersion = "1"
)

// attr is one node attribute: exactly one of the value fields is used.
type attr struct {
	name string
	i    *int64
	f    *float32
	s    string
	ints []int64
}

func intAttr(name string, v int64) attr     { return attr{name: name, i: &v} }
func floatAttr(name string, v float32) attr { return attr{name: name, f: &v} }
func intsAttr(name string, v ...int64) attr { return attr{name: name, ints: v} }
func strAttr(name, v string) attr           { return attr{name: name, s: v} }

// graph collects nodes and initializers; names are made unique by a counter.
type graph struct {
	name  string
	nodes [][]byte
	inits [][]byte
	n     int
}

func (g *graph) fresh(prefix string) string {
	g.n++
	return fmt.Sprintf("%s_%d", prefix, g.n)
}

// constFloat adds a float32 initializer of the given dims and returns its
// name.
func (g *graph) constFloat(data []float32, dims ...int) string {
	if numel(dims) != len(data) {
		panic(fmt.Sprintf("onnxgen: initializer of %d values for dims %v", len(data), dims))
	}
	name := g.fresh("w")
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	g.inits = append(g.inits, tensorProto(name, dtypeFloat, dims, raw))
	return name
}

// constInt64 adds an int64 initializer (1-D) and returns its name.
func (g *graph) constInt64(data ...int64) string {
	name := g.fresh("i")
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	g.inits = append(g.inits, tensorProto(name, dtypeInt64, []int{len(data)}, raw))
	return name
}

// op adds a node with one output and returns the output's name (out, or a
// fresh name when out is "").
func (g *graph) op(opType string, inputs []string, out string, attrs ...attr) string {
	if out == "" {
		out = g.fresh(opType)
	}
	var b []byte
	for _, in := range inputs {
		b = protowire.AppendTag(b, nodeInput, protowire.BytesType)
		b = protowire.AppendString(b, in)
	}
	b = protowire.AppendTag(b, nodeOutput, protowire.BytesType)
	b = protowire.AppendString(b, out)
	b = protowire.AppendTag(b, nodeName, protowire.BytesType)
	b = protowire.AppendString(b, out)
	b = protowire.AppendTag(b, nodeOpType, protowire.BytesType)
	b = protowire.AppendString(b, opType)
	for _, a := range attrs {
		b = protowire.AppendTag(b, nodeAttribute, protowire.BytesType)
		b = protowire.AppendBytes(b, a.encode())
	}
	g.nodes = append(g.nodes, b)
	return out
}

func (a attr) encode() []byte {
	var b []byte
	b = protowire.AppendTag(b, attrName, protowire.BytesType)
	b = protowire.AppendString(b, a.name)
	switch {
	case a.i != nil:
		b = protowire.AppendTag(b, attrI, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(*a.i))
		b = protowire.AppendTag(b, attrType, protowire.VarintType)
		b = protowire.AppendVarint(b, attrInt)
	case a.f != nil:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(*a.f))
		b = protowire.AppendTag(b, attrType, protowire.VarintType)
		b = protowire.AppendVarint(b, attrFloat)
	case a.ints != nil:
		for _, v := range a.ints { // unpacked: what onnx's own writer emits
			b = protowire.AppendTag(b, attrInts, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
		b = protowire.AppendTag(b, attrType, protowire.VarintType)
		b = protowire.AppendVarint(b, attrINTS)
	default:
		b = protowire.AppendTag(b, attrS, protowire.BytesType)
		b = protowire.AppendString(b, a.s)
		b = protowire.AppendTag(b, attrType, protowire.VarintType)
		b = protowire.AppendVarint(b, attrString)
	}
	return b
}

func tensorProto(name string, dtype int, dims []int, raw []byte) []byte {
	var b []byte
	for _, d := range dims {
		b = protowire.AppendTag(b, tensorDims, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, tensorDataType, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(dtype))
	b = protowire.AppendTag(b, tensorName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, tensorRawData, protowire.BytesType)
	b = protowire.AppendBytes(b, raw)
	return b
}

// valueInfo describes a float tensor of fixed dims.
func valueInfo(name string, dims ...int) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		dim = protowire.AppendTag(dim, dimValue, protowire.VarintType)
		dim = protowire.AppendVarint(dim, uint64(d))
		shape = protowire.AppendTag(shape, shapeDim, protowire.BytesType)
		shape = protowire.AppendBytes(shape, dim)
	}
	var tt []byte
	tt = protowire.AppendTag(tt, tensorElemType, protowire.VarintType)
	tt = protowire.AppendVarint(tt, dtypeFloat)
	tt = protowire.AppendTag(tt, tensorShape, protowire.BytesType)
	tt = protowire.AppendBytes(tt, shape)
	var typ []byte
	typ = protowire.AppendTag(typ, typeTensor, protowire.BytesType)
	typ = protowire.AppendBytes(typ, tt)
	var b []byte
	b = protowire.AppendTag(b, valueName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, valueType, protowire.BytesType)
	b = protowire.AppendBytes(b, typ)
	return b
}

// model serialises the graph as a ModelProto with one input and one output.
func (g *graph) model(in []byte, out []byte) []byte {
	var gb []byte
	for _, n := range g.nodes {
		gb = protowire.AppendTag(gb, graphNode, protowire.BytesType)
		gb = protowire.AppendBytes(gb, n)
	}
	gb = protowire.AppendTag(gb, graphName, protowire.BytesType)
	gb = protowire.AppendString(gb, g.name)
	for _, t := range g.inits {
		gb = protowire.AppendTag(gb, graphInitializer, protowire.BytesType)
		gb = protowire.AppendBytes(gb, t)
	}
	gb = protowire.AppendTag(gb, graphInput, protowire.BytesType)
	gb = protowire.AppendBytes(gb, in)
	gb = protowire.AppendTag(gb, graphOutput, protowire.BytesType)
	gb = protowire.AppendBytes(gb, out)

	var os []byte
	os = protowire.AppendTag(os, opsetVersion, protowire.VarintType)
	os = protowire.AppendVarint(os, opset)

	var b []byte
	b = protowire.AppendTag(b, modelIRVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, irVersion)
	b = protowire.AppendTag(b, modelProducerName, protowire.BytesType)
	b = protowire.AppendString(b, producerName)
	b = protowire.AppendTag(b, modelProducerVer, protowire.BytesType)
	b = protowire.AppendString(b, producerVersion)
	b = protowire.AppendTag(b, modelGraph, protowire.BytesType)
	b = protowire.AppendBytes(b, gb)
	b = protowire.AppendTag(b, modelOpsetImport, protowire.BytesType)
	b = protowire.AppendBytes(b, os)
	return b
}

func numel(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}
