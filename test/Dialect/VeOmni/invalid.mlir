// RUN: veomni-opt %s -split-input-file -verify-diagnostics

// Every verifier and shape-inference error of the veomni dialect. Ops whose
// result type is inferred report shape errors while their custom form is
// parsed; the generic form reaches the same rules through the verifier.

//===----------------------------------------------------------------------===//
// ODS type constraints
//===----------------------------------------------------------------------===//

func.func @dynamic_shape(%a: tensor<?x4xf32>) {
  // expected-error @+1 {{'veomni.add' op operand #0 must be a statically shaped tensor, got 'tensor<?x4xf32>'}}
  %0 = veomni.add %a, %a : tensor<?x4xf32>
  return
}

// -----

func.func @integer_matmul(%a: tensor<4x4xi32>) {
  // expected-error @+1 {{'veomni.matmul' op operand #0 must be statically shaped tensor of 32-bit float or bfloat16 type or 16-bit float values, but got 'tensor<4x4xi32>'}}
  %0 = veomni.matmul %a, %a : tensor<4x4xi32>, tensor<4x4xi32>
  return
}

// -----

func.func @float_indices(%t: tensor<10x4xf32>, %i: tensor<3xf32>) {
  // expected-error @+1 {{'veomni.gather' op operand #1 must be statically shaped tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<3xf32>'}}
  %0 = veomni.gather %t[%i] axis = 0 : tensor<10x4xf32>, tensor<3xf32>
  return
}

// -----

func.func @f64_cast(%a: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.cast' op result #0 must be statically shaped tensor of}}
  %0 = veomni.cast %a : tensor<4xf32> to tensor<4xf64>
  return
}

// -----

func.func @unranked_generic(%a: tensor<*xf32>, %b: tensor<4x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op operand #0 must be statically shaped tensor of}}
  %0 = "veomni.matmul"(%a, %b) : (tensor<*xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @f32_epsilon(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op attribute 'epsilon' failed to satisfy constraint: 64-bit float attribute}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-5 : f32} : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @bad_gelu_approximation(%x: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.gelu' op attribute 'approximation' failed to satisfy constraint}}
  %0 = veomni.gelu %x {approximation = 1 : i32} : tensor<4xf32>
  return
}

// -----

func.func @unary_result_type(%x: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.neg' op requires the same type for all operands and results}}
  %0 = "veomni.neg"(%x) : (tensor<4xf32>) -> tensor<4xbf16>
  return
}

// -----

func.func @missing_attribute_generic(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op requires attribute 'dims'}}
  %0 = "veomni.reduce"(%x) {kind = 0 : i32} : (tensor<4x8xf32>) -> tensor<8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Inferred result types against declared ones
//===----------------------------------------------------------------------===//

func.func @matmul_wrong_result(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  // expected-error @+2 {{'veomni.matmul' op inferred type(s) 'tensor<4x16xf32>' are incompatible with return type(s) of operation 'tensor<4x8xf32>'}}
  // expected-error @+1 {{'veomni.matmul' op failed to infer returned types}}
  %0 = "veomni.matmul"(%a, %b) : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @cross_entropy_wrong_result(%l: tensor<4x10xf32>, %y: tensor<4xi64>) {
  // expected-error @+2 {{'veomni.cross_entropy' op inferred type(s) 'tensor<4xf32>' are incompatible with return type(s) of operation 'tensor<f32>'}}
  // expected-error @+1 {{'veomni.cross_entropy' op failed to infer returned types}}
  %0 = "veomni.cross_entropy"(%l, %y) {reduction = #veomni<loss_reduction none>} : (tensor<4x10xf32>, tensor<4xi64>) -> tensor<f32>
  return
}

// -----

func.func @generic_shape_error(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) {
  // expected-error @+2 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<4x8xf32>' has 8 but rhs 'tensor<4x8xf32>' has 4}}
  // expected-error @+1 {{'veomni.matmul' op failed to infer returned types}}
  %0 = "veomni.matmul"(%a, %b) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// constant
//===----------------------------------------------------------------------===//

func.func @constant_vector() {
  // expected-error @+1 {{'veomni.constant' op value must be a ranked tensor}}
  %0 = veomni.constant dense<0.0> : vector<4xf32>
  return
}

// -----

func.func @constant_i8() {
  // expected-error @+1 {{'veomni.constant' op result #0 must be statically shaped tensor of}}
  %0 = veomni.constant dense<0> : tensor<4xi8>
  return
}

// -----

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

func.func @matmul_lhs_rank(%a: tensor<4xf32>, %b: tensor<4x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op lhs must have rank >= 2, got 'tensor<4xf32>'}}
  %0 = veomni.matmul %a, %b : tensor<4xf32>, tensor<4x4xf32>
  return
}

// -----

func.func @matmul_rhs_rank(%a: tensor<2x4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.matmul' op rhs must have rank 2 or the rank of lhs 'tensor<2x4x8xf32>', got 'tensor<8xf32>'}}
  %0 = veomni.matmul %a, %b : tensor<2x4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @matmul_rhs_rank_higher(%a: tensor<4x8xf32>, %b: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op rhs must have rank 2 or the rank of lhs 'tensor<4x8xf32>', got 'tensor<2x8x4xf32>'}}
  %0 = veomni.matmul %a, %b : tensor<4x8xf32>, tensor<2x8x4xf32>
  return
}

// -----

func.func @matmul_element_type(%a: tensor<4x8xf32>, %b: tensor<8x4xbf16>) {
  // expected-error @+1 {{'veomni.matmul' op lhs 'tensor<4x8xf32>' and rhs 'tensor<8x4xbf16>' have different element types}}
  %0 = veomni.matmul %a, %b : tensor<4x8xf32>, tensor<8x4xbf16>
  return
}

// -----

func.func @matmul_batch(%a: tensor<2x3x4x8xf32>, %b: tensor<2x5x8x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op batch dimension 1 differs: lhs 'tensor<2x3x4x8xf32>' has 3 but rhs 'tensor<2x5x8x4xf32>' has 5}}
  %0 = veomni.matmul %a, %b : tensor<2x3x4x8xf32>, tensor<2x5x8x4xf32>
  return
}

// -----

func.func @matmul_contracting(%a: tensor<2x4x8xf32>, %b: tensor<2x6x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<2x4x8xf32>' has 8 but rhs 'tensor<2x6x4xf32>' has 6}}
  %0 = veomni.matmul %a, %b : tensor<2x4x8xf32>, tensor<2x6x4xf32>
  return
}

// -----

func.func @matmul_contracting_shared_rhs(%a: tensor<2x4x8xf32>, %b: tensor<6x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<2x4x8xf32>' has 8 but rhs 'tensor<6x4xf32>' has 6}}
  %0 = veomni.matmul %a, %b : tensor<2x4x8xf32>, tensor<6x4xf32>
  return
}

// -----

func.func @matmul_contracting_transpose_lhs(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  // expected-error @+1 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<4x8xf32>' has 4 but rhs 'tensor<8x16xf32>' has 8}}
  %0 = veomni.matmul %a, %b {transpose_lhs} : tensor<4x8xf32>, tensor<8x16xf32>
  return
}

// -----

func.func @matmul_contracting_transpose_rhs(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  // expected-error @+1 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<4x8xf32>' has 8 but rhs 'tensor<8x16xf32>' has 16}}
  %0 = veomni.matmul %a, %b {transpose_rhs} : tensor<4x8xf32>, tensor<8x16xf32>
  return
}

// -----

func.func @matmul_contracting_transpose_both(%a: tensor<4x8xf32>, %b: tensor<16x8xf32>) {
  // expected-error @+1 {{'veomni.matmul' op contracting dimension differs: lhs 'tensor<4x8xf32>' has 4 but rhs 'tensor<16x8xf32>' has 8}}
  %0 = veomni.matmul %a, %b {transpose_lhs, transpose_rhs} : tensor<4x8xf32>, tensor<16x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// grouped_matmul
//===----------------------------------------------------------------------===//

func.func @grouped_matmul_input_rank(%x: tensor<2x12x64xf32>, %w: tensor<4x64x32xf32>, %g: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op input must have rank 2, got 'tensor<2x12x64xf32>'}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<2x12x64xf32>, tensor<4x64x32xf32>, tensor<4xi32>
  return
}

// -----

func.func @grouped_matmul_weight_rank(%x: tensor<12x64xf32>, %w: tensor<64x32xf32>, %g: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op weight must have rank 3, got 'tensor<64x32xf32>'}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<12x64xf32>, tensor<64x32xf32>, tensor<4xi32>
  return
}

// -----

func.func @grouped_matmul_groups_rank(%x: tensor<12x64xf32>, %w: tensor<4x64x32xf32>, %g: tensor<4x1xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op group_sizes must have rank 1, got 'tensor<4x1xi32>'}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<12x64xf32>, tensor<4x64x32xf32>, tensor<4x1xi32>
  return
}

// -----

func.func @grouped_matmul_element_type(%x: tensor<12x64xbf16>, %w: tensor<4x64x32xf32>, %g: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op input 'tensor<12x64xbf16>' and weight 'tensor<4x64x32xf32>' have different element types}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<12x64xbf16>, tensor<4x64x32xf32>, tensor<4xi32>
  return
}

// -----

func.func @grouped_matmul_expert_count(%x: tensor<12x64xf32>, %w: tensor<4x64x32xf32>, %g: tensor<3xi64>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op expert count differs: weight 'tensor<4x64x32xf32>' has 4 but group_sizes 'tensor<3xi64>' has 3}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<12x64xf32>, tensor<4x64x32xf32>, tensor<3xi64>
  return
}

// -----

// Partitioned over split experts, the weight holds a slice of the experts
// the group sizes count: 3 is no multiple of 2.
func.func @grouped_matmul_expert_slice(%x: tensor<12x64xf32>, %w: tensor<2x64x32xf32>, %g: tensor<3xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op group_sizes 'tensor<3xi32>' must count a multiple of the 2 experts of weight 'tensor<2x64x32xf32>' (dist.expert_axes)}}
  %0 = veomni.grouped_matmul %x, %w, %g {dist.expert_axes = ["ep"]} : tensor<12x64xf32>, tensor<2x64x32xf32>, tensor<3xi32>
  return
}

// -----

func.func @grouped_matmul_contracting(%x: tensor<12x64xf32>, %w: tensor<4x32x64xf32>, %g: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op contracting dimension differs: input 'tensor<12x64xf32>' has 64 but weight 'tensor<4x32x64xf32>' has 32}}
  %0 = veomni.grouped_matmul %x, %w, %g : tensor<12x64xf32>, tensor<4x32x64xf32>, tensor<4xi32>
  return
}

// -----

func.func @grouped_matmul_contracting_transposed(%x: tensor<12x64xf32>, %w: tensor<4x64x32xf32>, %g: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.grouped_matmul' op contracting dimension differs: input 'tensor<12x64xf32>' has 64 but weight 'tensor<4x64x32xf32>' has 32}}
  %0 = veomni.grouped_matmul %x, %w, %g {transpose_weight} : tensor<12x64xf32>, tensor<4x64x32xf32>, tensor<4xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// conv1d
//===----------------------------------------------------------------------===//

func.func @conv1d_input_rank(%x: tensor<80x300xf32>, %w: tensor<64x80x3xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op input must have rank 3, got 'tensor<80x300xf32>'}}
  %0 = veomni.conv1d %x, %w : tensor<80x300xf32>, tensor<64x80x3xf32>
  return
}

// -----

func.func @conv1d_weight_rank(%x: tensor<2x80x300xf32>, %w: tensor<64x80xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op weight must have rank 3, got 'tensor<64x80xf32>'}}
  %0 = veomni.conv1d %x, %w : tensor<2x80x300xf32>, tensor<64x80xf32>
  return
}

// -----

func.func @conv1d_element_type(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf16>) {
  // expected-error @+1 {{'veomni.conv1d' op input 'tensor<2x80x300xf32>' and weight 'tensor<64x80x3xf16>' have different element types}}
  %0 = veomni.conv1d %x, %w : tensor<2x80x300xf32>, tensor<64x80x3xf16>
  return
}

// -----

func.func @conv1d_in_channels(%x: tensor<2x80x300xf32>, %w: tensor<64x40x3xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op input channel count differs: input 'tensor<2x80x300xf32>' has 80 but weight 'tensor<64x40x3xf32>' has 40}}
  %0 = veomni.conv1d %x, %w : tensor<2x80x300xf32>, tensor<64x40x3xf32>
  return
}

// -----

func.func @conv1d_bias_rank(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>, %b: tensor<1x64xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op bias must have rank 1, got 'tensor<1x64xf32>'}}
  %0 = veomni.conv1d %x, %w, %b : tensor<2x80x300xf32>, tensor<64x80x3xf32>, tensor<1x64xf32>
  return
}

// -----

func.func @conv1d_bias_element_type(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>, %b: tensor<64xbf16>) {
  // expected-error @+1 {{'veomni.conv1d' op input 'tensor<2x80x300xf32>' and bias 'tensor<64xbf16>' have different element types}}
  %0 = veomni.conv1d %x, %w, %b : tensor<2x80x300xf32>, tensor<64x80x3xf32>, tensor<64xbf16>
  return
}

// -----

func.func @conv1d_bias_size(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>, %b: tensor<32xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op output channel count differs: weight 'tensor<64x80x3xf32>' has 64 but bias 'tensor<32xf32>' has 32}}
  %0 = veomni.conv1d %x, %w, %b : tensor<2x80x300xf32>, tensor<64x80x3xf32>, tensor<32xf32>
  return
}

// -----

func.func @conv1d_stride(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op stride must be >= 1, got 0}}
  %0 = veomni.conv1d %x, %w {stride = 0} : tensor<2x80x300xf32>, tensor<64x80x3xf32>
  return
}

// -----

func.func @conv1d_padding(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op padding must be >= 0, got -1}}
  %0 = veomni.conv1d %x, %w {padding = -1} : tensor<2x80x300xf32>, tensor<64x80x3xf32>
  return
}

// -----

func.func @conv1d_kernel_too_long(%x: tensor<2x80x4xf32>, %w: tensor<64x80x7xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op kernel of weight 'tensor<64x80x7xf32>' is longer than padded input 'tensor<2x80x4xf32>'}}
  %0 = veomni.conv1d %x, %w {padding = 1} : tensor<2x80x4xf32>, tensor<64x80x7xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Elementwise and cast
//===----------------------------------------------------------------------===//

func.func @add_shape(%a: tensor<4x8xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{'veomni.add' op operands differ: lhs 'tensor<4x8xf32>' but rhs 'tensor<1x8xf32>' (broadcast explicitly with veomni.broadcast)}}
  %0 = veomni.add %a, %b : tensor<4x8xf32>, tensor<1x8xf32>
  return
}

// -----

func.func @sub_element_type(%a: tensor<4x8xf32>, %b: tensor<4x8xbf16>) {
  // expected-error @+1 {{'veomni.sub' op operands differ: lhs 'tensor<4x8xf32>' but rhs 'tensor<4x8xbf16>'}}
  %0 = veomni.sub %a, %b : tensor<4x8xf32>, tensor<4x8xbf16>
  return
}

// -----

func.func @mul_shape(%a: tensor<4x8xf16>, %b: tensor<8x4xf16>) {
  // expected-error @+1 {{'veomni.mul' op operands differ: lhs 'tensor<4x8xf16>' but rhs 'tensor<8x4xf16>'}}
  %0 = veomni.mul %a, %b : tensor<4x8xf16>, tensor<8x4xf16>
  return
}

// -----

func.func @div_rank(%a: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.div' op operands differ: lhs 'tensor<4x8xf32>' but rhs 'tensor<8xf32>'}}
  %0 = veomni.div %a, %b : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

// In the generic form the Elementwise trait rejects a shape mismatch before
// shape inference runs; an element type mismatch reaches inference.
func.func @add_generic_shape(%a: tensor<4x8xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{'veomni.add' op all non-scalar operands/results must have the same shape and base type}}
  %0 = "veomni.add"(%a, %b) : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @add_generic_element_type(%a: tensor<4x8xf32>, %b: tensor<4x8xbf16>) {
  // expected-error @+2 {{'veomni.add' op operands differ: lhs 'tensor<4x8xf32>' but rhs 'tensor<4x8xbf16>'}}
  // expected-error @+1 {{'veomni.add' op failed to infer returned types}}
  %0 = "veomni.add"(%a, %b) : (tensor<4x8xf32>, tensor<4x8xbf16>) -> tensor<4x8xf32>
  return
}

// -----

// The Elementwise trait verifier runs before CastOp::verify, so the cast's own
// "result ... must have the shape of input ..." message is never reached.
func.func @cast_shape(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.cast' op all non-scalar operands/results must have the same shape and base type}}
  %0 = veomni.cast %a : tensor<4x8xf32> to tensor<8x4xbf16>
  return
}

// -----

func.func @cast_float_to_int(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.cast' op cannot cast float input 'tensor<4x8xf32>' to non-float 'tensor<4x8xi32>'}}
  %0 = veomni.cast %a : tensor<4x8xf32> to tensor<4x8xi32>
  return
}

// -----

func.func @cast_float_to_bool(%a: tensor<4xbf16>) {
  // expected-error @+1 {{'veomni.cast' op cannot cast float input 'tensor<4xbf16>' to non-float 'tensor<4xi1>'}}
  %0 = veomni.cast %a : tensor<4xbf16> to tensor<4xi1>
  return
}

// -----

//===----------------------------------------------------------------------===//
// reduce and softmax
//===----------------------------------------------------------------------===//

func.func @reduce_no_dims(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op dims must name at least one dimension of input 'tensor<4x8xf32>'}}
  %0 = veomni.reduce sum %x dims = [] : tensor<4x8xf32>
  return
}

// -----

func.func @reduce_dim_too_large(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op dims[1] = 2 is out of range for input 'tensor<4x8xf32>'}}
  %0 = veomni.reduce max %x dims = [0, 2] : tensor<4x8xf32>
  return
}

// -----

func.func @reduce_dim_negative(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op dims[0] = -1 is out of range for input 'tensor<4x8xf32>'}}
  %0 = veomni.reduce mean %x dims = [-1] : tensor<4x8xf32>
  return
}

// -----

func.func @reduce_dims_decreasing(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op dims must be strictly increasing, got dims[0] = 2 then 1}}
  %0 = veomni.reduce sum %x dims = [2, 1] : tensor<2x4x8xf32>
  return
}

// -----

func.func @reduce_dims_repeated(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'veomni.reduce' op dims must be strictly increasing, got dims[1] = 1 then 1}}
  %0 = veomni.reduce sum %x dims = [0, 1, 1] keep_dims : tensor<2x4x8xf32>
  return
}

// -----

func.func @softmax_dim_too_large(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.softmax' op dim = 2 is out of range for input 'tensor<4x8xf32>'}}
  %0 = veomni.softmax %x dim = 2 : tensor<4x8xf32>
  return
}

// -----

func.func @softmax_dim_negative(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.softmax' op dim = -1 is out of range for input 'tensor<4x8xf32>'}}
  %0 = veomni.softmax %x dim = -1 : tensor<4x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// rms_norm and layer_norm
//===----------------------------------------------------------------------===//

func.func @rms_norm_scalar_input(%x: tensor<f32>, %w: tensor<1xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op input must have rank >= 1, got 'tensor<f32>'}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<f32>, tensor<1xf32>
  return
}

// -----

func.func @rms_norm_no_epsilon(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op requires attribute 'epsilon'}}
  %0 = veomni.rms_norm %x, %w : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_zero_epsilon(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op epsilon must be positive, got 0.000000e+00}}
  %0 = veomni.rms_norm %x, %w {epsilon = 0.0 : f64} : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_weight_rank(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op weight must have rank 1, got 'tensor<4x8xf32>'}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<4x8xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @rms_norm_weight_element_type(%x: tensor<4x8xbf16>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op input 'tensor<4x8xbf16>' and weight 'tensor<8xf32>' have different element types}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<4x8xbf16>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_weight_size(%x: tensor<4x8xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op normalised dimension differs: input 'tensor<4x8xf32>' has 8 but weight 'tensor<4xf32>' has 4}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<4x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @layer_norm_negative_epsilon(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.layer_norm' op epsilon must be positive, got -1.000000e-05}}
  %0 = veomni.layer_norm %x, %w {epsilon = -1.0e-5 : f64} : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @layer_norm_weight_size(%x: tensor<4x8xf32>, %w: tensor<16xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.layer_norm' op normalised dimension differs: input 'tensor<4x8xf32>' has 8 but weight 'tensor<16xf32>' has 16}}
  %0 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<4x8xf32>, tensor<16xf32>, tensor<8xf32>
  return
}

// -----

func.func @layer_norm_bias_rank(%x: tensor<4x8xf32>, %w: tensor<8xf32>, %b: tensor<f32>) {
  // expected-error @+1 {{'veomni.layer_norm' op bias must have rank 1, got 'tensor<f32>'}}
  %0 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<4x8xf32>, tensor<8xf32>, tensor<f32>
  return
}

// -----

func.func @layer_norm_bias_element_type(%x: tensor<4x8xf32>, %w: tensor<8xf32>, %b: tensor<8xf16>) {
  // expected-error @+1 {{'veomni.layer_norm' op input 'tensor<4x8xf32>' and bias 'tensor<8xf16>' have different element types}}
  %0 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<4x8xf32>, tensor<8xf32>, tensor<8xf16>
  return
}

// -----

func.func @layer_norm_bias_size(%x: tensor<4x8xf32>, %w: tensor<8xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.layer_norm' op normalised dimension differs: input 'tensor<4x8xf32>' has 8 but bias 'tensor<4xf32>' has 4}}
  %0 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<4x8xf32>, tensor<8xf32>, tensor<4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// broadcast and reshape
//===----------------------------------------------------------------------===//

func.func @broadcast_element_type(%x: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op input 'tensor<8xf32>' and result 'tensor<4x8xbf16>' have different element types}}
  %0 = veomni.broadcast %x dims = [1] : tensor<8xf32> to tensor<4x8xbf16>
  return
}

// -----

func.func @broadcast_dims_count(%x: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op dims has 2 entries but input 'tensor<8xf32>' has rank 1}}
  %0 = veomni.broadcast %x dims = [0, 1] : tensor<8xf32> to tensor<4x8xf32>
  return
}

// -----

func.func @broadcast_dim_out_of_range(%x: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op dims[0] = 2 is out of range for result 'tensor<4x8xf32>'}}
  %0 = veomni.broadcast %x dims = [2] : tensor<8xf32> to tensor<4x8xf32>
  return
}

// -----

func.func @broadcast_dim_negative(%x: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op dims[0] = -1 is out of range for result 'tensor<4x8xf32>'}}
  %0 = veomni.broadcast %x dims = [-1] : tensor<8xf32> to tensor<4x8xf32>
  return
}

// -----

func.func @broadcast_dims_not_increasing(%x: tensor<1x1xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op dims must be strictly increasing, got dims[0] = 2 then 0}}
  %0 = veomni.broadcast %x dims = [2, 0] : tensor<1x1xf32> to tensor<2x4x8xf32>
  return
}

// -----

func.func @broadcast_size(%x: tensor<4x3xf32>) {
  // expected-error @+1 {{'veomni.broadcast' op input 'tensor<4x3xf32>' dimension 1 of size 3 cannot broadcast to result 'tensor<2x4x8xf32>' dimension 2}}
  %0 = veomni.broadcast %x dims = [1, 2] : tensor<4x3xf32> to tensor<2x4x8xf32>
  return
}

// -----

func.func @reshape_element_type(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reshape' op input 'tensor<4x8xf32>' and result 'tensor<32xf16>' have different element types}}
  %0 = veomni.reshape %x : tensor<4x8xf32> to tensor<32xf16>
  return
}

// -----

func.func @reshape_element_count(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.reshape' op input 'tensor<4x8xf32>' has 32 elements but result 'tensor<2x8xf32>' has 16}}
  %0 = veomni.reshape %x : tensor<4x8xf32> to tensor<2x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// transpose, slice, concat
//===----------------------------------------------------------------------===//

func.func @transpose_perm_size(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'veomni.transpose' op perm has 2 entries but input 'tensor<2x4x8xf32>' has rank 3}}
  %0 = veomni.transpose %x perm = [1, 0] : tensor<2x4x8xf32>
  return
}

// -----

func.func @transpose_perm_repeated(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'veomni.transpose' op perm is not a permutation of the dimensions of input 'tensor<2x4x8xf32>'}}
  %0 = veomni.transpose %x perm = [0, 2, 0] : tensor<2x4x8xf32>
  return
}

// -----

func.func @transpose_perm_out_of_range(%x: tensor<2x4x8xi32>) {
  // expected-error @+1 {{'veomni.transpose' op perm is not a permutation of the dimensions of input 'tensor<2x4x8xi32>'}}
  %0 = veomni.transpose %x perm = [0, 3, 1] : tensor<2x4x8xi32>
  return
}

// -----

func.func @transpose_perm_negative(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{'veomni.transpose' op perm is not a permutation of the dimensions of input 'tensor<2x4xf32>'}}
  %0 = veomni.transpose %x perm = [-1, 0] : tensor<2x4xf32>
  return
}

// -----

func.func @slice_arity(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.slice' op start, limit and step need one entry per dimension of input 'tensor<4x8xf32>', got 2, 2 and 1}}
  %0 = veomni.slice %x start = [0, 0] limit = [4, 8] step = [1] : tensor<4x8xf32>
  return
}

// -----

func.func @slice_step(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.slice' op step[1] = 0 must be >= 1}}
  %0 = veomni.slice %x start = [0, 0] limit = [4, 8] step = [1, 0] : tensor<4x8xf32>
  return
}

// -----

func.func @slice_empty(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.slice' op dimension 1 slice [4, 4) is empty or outside input 'tensor<4x8xf32>'}}
  %0 = veomni.slice %x start = [0, 4] limit = [4, 4] step = [1, 1] : tensor<4x8xf32>
  return
}

// -----

func.func @slice_past_end(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.slice' op dimension 0 slice [2, 5) is empty or outside input 'tensor<4x8xf32>'}}
  %0 = veomni.slice %x start = [2, 0] limit = [5, 8] step = [1, 1] : tensor<4x8xf32>
  return
}

// -----

func.func @slice_negative_start(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.slice' op dimension 1 slice [-2, 8) is empty or outside input 'tensor<4x8xf32>'}}
  %0 = veomni.slice %x start = [0, -2] limit = [4, 8] step = [1, 2] : tensor<4x8xf32>
  return
}

// -----

func.func @concat_no_inputs() {
  // expected-error @+2 {{'veomni.concat' op needs at least one input}}
  // expected-error @+1 {{'veomni.concat' op failed to infer returned types}}
  %0 = "veomni.concat"() {dim = 0 : i64} : () -> tensor<4xf32>
  return
}

// -----

func.func @concat_dim(%a: tensor<2x4xf32>, %b: tensor<2x4xf32>) {
  // expected-error @+1 {{'veomni.concat' op dim = 2 is out of range for input #0 'tensor<2x4xf32>'}}
  %0 = veomni.concat %a, %b dim = 2 : tensor<2x4xf32>, tensor<2x4xf32>
  return
}

// -----

func.func @concat_rank(%a: tensor<2x4xf32>, %b: tensor<2x4x1xf32>) {
  // expected-error @+1 {{'veomni.concat' op input #1 'tensor<2x4x1xf32>' does not match the rank and element type of input #0 'tensor<2x4xf32>'}}
  %0 = veomni.concat %a, %b dim = 0 : tensor<2x4xf32>, tensor<2x4x1xf32>
  return
}

// -----

func.func @concat_element_type(%a: tensor<2x4xf32>, %b: tensor<2x4xf32>, %c: tensor<2x4xi32>) {
  // expected-error @+1 {{'veomni.concat' op input #2 'tensor<2x4xi32>' does not match the rank and element type of input #0 'tensor<2x4xf32>'}}
  %0 = veomni.concat %a, %b, %c dim = 0 : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xi32>
  return
}

// -----

func.func @concat_other_dim(%a: tensor<2x4x8xf32>, %b: tensor<2x3x6xf32>) {
  // expected-error @+1 {{'veomni.concat' op dimension 2 differs: input #0 'tensor<2x4x8xf32>' has 8 but input #1 'tensor<2x3x6xf32>' has 6}}
  %0 = veomni.concat %a, %b dim = 1 : tensor<2x4x8xf32>, tensor<2x3x6xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// gather and scatter_add
//===----------------------------------------------------------------------===//

func.func @gather_axis(%t: tensor<1000x64xf32>, %i: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.gather' op axis = 2 is out of range for source 'tensor<1000x64xf32>'}}
  %0 = veomni.gather %t[%i] axis = 2 : tensor<1000x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @gather_negative_axis(%t: tensor<1000x64xf32>, %i: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.gather' op axis = -1 is out of range for source 'tensor<1000x64xf32>'}}
  %0 = veomni.gather %t[%i] axis = -1 : tensor<1000x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @scatter_add_axis(%u: tensor<2x16x64xf32>, %d: tensor<1000x64xf32>, %i: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.scatter_add' op axis = 2 is out of range for dest 'tensor<1000x64xf32>'}}
  %0 = veomni.scatter_add %u into %d[%i] axis = 2 : tensor<2x16x64xf32>, tensor<1000x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @scatter_add_element_type(%u: tensor<2x16x64xbf16>, %d: tensor<1000x64xf32>, %i: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.scatter_add' op dest 'tensor<1000x64xf32>' and updates 'tensor<2x16x64xbf16>' have different element types}}
  %0 = veomni.scatter_add %u into %d[%i] axis = 0 : tensor<2x16x64xbf16>, tensor<1000x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @scatter_add_updates_shape(%u: tensor<2x16x32xf32>, %d: tensor<1000x64xf32>, %i: tensor<2x16xi64>) {
  // expected-error @+1 {{'veomni.scatter_add' op updates 'tensor<2x16x32xf32>' must have shape 'tensor<2x16x64xf32>' for dest 'tensor<1000x64xf32>' and indices 'tensor<2x16xi64>'}}
  %0 = veomni.scatter_add %u into %d[%i] axis = 0 : tensor<2x16x32xf32>, tensor<1000x64xf32>, tensor<2x16xi64>
  return
}

// -----

func.func @scatter_add_updates_shape_axis1(%u: tensor<3x64xf32>, %d: tensor<1000x64xf32>, %i: tensor<5xi32>) {
  // expected-error @+1 {{'veomni.scatter_add' op updates 'tensor<3x64xf32>' must have shape 'tensor<1000x5xf32>' for dest 'tensor<1000x64xf32>' and indices 'tensor<5xi32>'}}
  %0 = veomni.scatter_add %u into %d[%i] axis = 1 : tensor<3x64xf32>, tensor<1000x64xf32>, tensor<5xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// rope
//===----------------------------------------------------------------------===//

func.func @rope_input_rank(%x: tensor<2x16x64xf32>, %p: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op input must have rank 4, got 'tensor<2x16x64xf32>'}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64} : tensor<2x16x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @rope_odd_head_dim(%x: tensor<2x16x4x7xf32>, %p: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op head dimension of input 'tensor<2x16x4x7xf32>' must be even}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64} : tensor<2x16x4x7xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @rope_no_theta(%x: tensor<2x16x4x8xf32>, %p: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op requires attribute 'theta'}}
  %0 = veomni.rope %x, %p : tensor<2x16x4x8xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @rope_theta(%x: tensor<2x16x4x8xf32>, %p: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op theta must be positive, got 0.000000e+00}}
  %0 = veomni.rope %x, %p {theta = 0.0 : f64} : tensor<2x16x4x8xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @rope_inv_freq(%x: tensor<2x16x4x8xf32>, %p: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op inv_freq has 3 entries but input 'tensor<2x16x4x8xf32>' needs 4}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, inv_freq = array<f32: 1.0, 0.5, 0.25>} : tensor<2x16x4x8xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @rope_mrope_nonpositive(%x: tensor<2x16x4x8xf32>, %p: tensor<3x2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op mrope_section sizes must be positive}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 2, 0, 2>} : tensor<2x16x4x8xf32>, tensor<3x2x16xi64>
  return
}

// -----

func.func @rope_mrope_sum(%x: tensor<2x16x4x8xf32>, %p: tensor<3x2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op mrope_section sums to 5 but input 'tensor<2x16x4x8xf32>' has 4 frequencies}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 1, 2, 2>} : tensor<2x16x4x8xf32>, tensor<3x2x16xi64>
  return
}

// -----

func.func @rope_mrope_positions_rank(%x: tensor<2x16x4x8xf32>, %p: tensor<2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op positions must have rank 3, got 'tensor<2x16xi64>'}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 1, 1, 2>} : tensor<2x16x4x8xf32>, tensor<2x16xi64>
  return
}

// -----

func.func @rope_interleaved_far(%x: tensor<2x16x4x8xf32>, %p: tensor<3x2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op interleaved mrope_section 2 of section 2 reaches past the 4 frequencies}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 1, 1, 2>, mrope_interleaved} : tensor<2x16x4x8xf32>, tensor<3x2x16xi64>
  return
}

// -----

func.func @rope_interleaved_alone(%x: tensor<2x16x4x8xf32>, %p: tensor<2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op mrope_interleaved needs mrope_section}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_interleaved} : tensor<2x16x4x8xf32>, tensor<2x16xi64>
  return
}

// -----

func.func @rope_mrope_rows(%x: tensor<2x16x4x8xf32>, %p: tensor<2x2x16xi64>) {
  // expected-error @+1 {{'veomni.rope' op positions 'tensor<2x2x16xi64>' must have one row per section (3)}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 1, 1, 2>} : tensor<2x16x4x8xf32>, tensor<2x2x16xi64>
  return
}

// -----

func.func @rope_mrope_sequence(%x: tensor<2x16x4x8xf32>, %p: tensor<3x2x8xi64>) {
  // expected-error @+1 {{'veomni.rope' op sequence length differs: input 'tensor<2x16x4x8xf32>' has 16 but positions 'tensor<3x2x8xi64>' has 8}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64, mrope_section = array<i64: 1, 1, 2>} : tensor<2x16x4x8xf32>, tensor<3x2x8xi64>
  return
}

// -----

func.func @rope_positions_rank(%x: tensor<2x16x4x8xf32>, %p: tensor<3x2x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op positions must have rank 2, got 'tensor<3x2x16xi32>'}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64} : tensor<2x16x4x8xf32>, tensor<3x2x16xi32>
  return
}

// -----

func.func @rope_batch(%x: tensor<2x16x4x8xf32>, %p: tensor<1x16xi32>) {
  // expected-error @+1 {{'veomni.rope' op batch size differs: input 'tensor<2x16x4x8xf32>' has 2 but positions 'tensor<1x16xi32>' has 1}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64} : tensor<2x16x4x8xf32>, tensor<1x16xi32>
  return
}

// -----

func.func @rope_sequence(%x: tensor<2x16x4x8xf32>, %p: tensor<2x32xi32>) {
  // expected-error @+1 {{'veomni.rope' op sequence length differs: input 'tensor<2x16x4x8xf32>' has 16 but positions 'tensor<2x32xi32>' has 32}}
  %0 = veomni.rope %x, %p {theta = 1.0e4 : f64} : tensor<2x16x4x8xf32>, tensor<2x32xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// attention
//===----------------------------------------------------------------------===//

func.func @moe_group_topk_groups(%s: tensor<16x6xf32>, %b: tensor<6xf32>) {
  // expected-error @+1 {{'veomni.moe_group_topk' op groups = 4 must divide the 6 experts of scores 'tensor<16x6xf32>'}}
  %w, %i = veomni.moe_group_topk %s, %b {k = 2, groups = 4} : tensor<16x6xf32>, tensor<6xf32>
  return
}

// -----

func.func @moe_group_topk_k(%s: tensor<16x6xf32>, %b: tensor<6xf32>) {
  // expected-error @+1 {{'veomni.moe_group_topk' op k = 4 must be in [1, 3], the experts of the topk_groups best groups}}
  %w, %i = veomni.moe_group_topk %s, %b {k = 4, groups = 2, topk_groups = 1} : tensor<16x6xf32>, tensor<6xf32>
  return
}

// -----

func.func @clamp_bounds(%x: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.clamp' op min 2.000000e+00 exceeds max 1.000000e+00}}
  %0 = veomni.clamp %x {min = 2.0 : f64, max = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @attention_window_needs_causal(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op a sliding window (4) needs causal attention}}
  %0 = veomni.attention %q, %k, %k {scale = 0.125 : f64, window = 4 : i64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_negative_window(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op window must be >= 0 (0: none), got -1}}
  %0 = veomni.attention %q, %k, %k {causal, scale = 0.125 : f64, window = -1 : i64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_sinks_heads(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<2xf32>) {
  // expected-error @+1 {{'veomni.attention' op head count differs: query 'tensor<2x16x8x64xf32>' has 8 but sinks 'tensor<2xf32>' has 2}}
  %0 = veomni.attention %q, %k, %k sinks %s {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32> sinks tensor<2xf32>
  return
}

// -----

func.func @attention_two_sinks(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.attention' op takes at most one integer segment_ids operand, then at most one float sinks operand; got 2 optional operands}}
  %0 = veomni.attention %q, %k, %k sinks %s sinks %s {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32> sinks tensor<8xf32> sinks tensor<8xf32>
  return
}

// -----

func.func @attention_query_rank(%q: tensor<2x16x64xf32>, %k: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op query must have rank 4, got 'tensor<2x16x64xf32>'}}
  %0 = veomni.attention %q, %k, %k {scale = 0.125 : f64} : tensor<2x16x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_key_rank(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x64xf32>, %v: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op key must have rank 4, got 'tensor<2x16x64xf32>'}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_value_rank(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %v: tensor<2x16x2x64x1xf32>) {
  // expected-error @+1 {{'veomni.attention' op value must have rank 4, got 'tensor<2x16x2x64x1xf32>'}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64x1xf32>
  return
}

// -----

func.func @attention_key_element_type(%q: tensor<2x16x8x64xbf16>, %k: tensor<2x16x2x64xf32>, %v: tensor<2x16x2x64xbf16>) {
  // expected-error @+1 {{'veomni.attention' op query 'tensor<2x16x8x64xbf16>' and key 'tensor<2x16x2x64xf32>' have different element types}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xbf16>
  return
}

// -----

func.func @attention_value_element_type(%q: tensor<2x16x8x64xbf16>, %k: tensor<2x16x2x64xbf16>, %v: tensor<2x16x2x64xf16>) {
  // expected-error @+1 {{'veomni.attention' op query 'tensor<2x16x8x64xbf16>' and value 'tensor<2x16x2x64xf16>' have different element types}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xf16>
  return
}

// -----

func.func @attention_key_batch(%q: tensor<2x16x8x64xf32>, %k: tensor<1x16x2x64xf32>, %v: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op batch size differs: query 'tensor<2x16x8x64xf32>' has 2 but key 'tensor<1x16x2x64xf32>' has 1}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<1x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_value_batch(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %v: tensor<3x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op batch size differs: query 'tensor<2x16x8x64xf32>' has 2 but value 'tensor<3x16x2x64xf32>' has 3}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<3x16x2x64xf32>
  return
}

// -----

func.func @attention_kv_length(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %v: tensor<2x12x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op key/value length differs: key 'tensor<2x16x2x64xf32>' has 16 but value 'tensor<2x12x2x64xf32>' has 12}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x12x2x64xf32>
  return
}

// -----

func.func @attention_kv_heads(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %v: tensor<2x16x4x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op key/value head count differs: key 'tensor<2x16x2x64xf32>' has 2 but value 'tensor<2x16x4x64xf32>' has 4}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x4x64xf32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x32xf32>, %v: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op head dimension differs: query 'tensor<2x16x8x64xf32>' has 64 but key 'tensor<2x16x2x32xf32>' has 32}}
  %0 = veomni.attention %q, %k, %v {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x32xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_gqa(%q: tensor<2x16x6x64xf32>, %k: tensor<2x16x4x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op key/value head count 4 of key 'tensor<2x16x4x64xf32>' does not divide the query head count 6 of query 'tensor<2x16x6x64xf32>'}}
  %0 = veomni.attention %q, %k, %k {scale = 0.125 : f64} : tensor<2x16x6x64xf32>, tensor<2x16x4x64xf32>, tensor<2x16x4x64xf32>
  return
}

// -----

func.func @attention_causal_lengths(%q: tensor<2x16x8x64xf32>, %k: tensor<2x32x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op causal attention needs query 'tensor<2x16x8x64xf32>' and key 'tensor<2x32x2x64xf32>' of one sequence length}}
  %0 = veomni.attention %q, %k, %k {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x32x2x64xf32>, tensor<2x32x2x64xf32>
  return
}

// -----

func.func @attention_segments_lengths(%q: tensor<2x16x8x64xf32>, %k: tensor<2x32x2x64xf32>, %s: tensor<2x16xi32>) {
  // expected-error @+1 {{'veomni.attention' op segment_ids need query 'tensor<2x16x8x64xf32>' and key 'tensor<2x32x2x64xf32>' of one sequence length}}
  %0 = veomni.attention %q, %k, %k segments %s {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x32x2x64xf32>, tensor<2x32x2x64xf32>, tensor<2x16xi32>
  return
}

// -----

func.func @attention_segments_rank(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<32xi32>) {
  // expected-error @+1 {{'veomni.attention' op segment_ids must have rank 2, got 'tensor<32xi32>'}}
  %0 = veomni.attention %q, %k, %k segments %s {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<32xi32>
  return
}

// -----

func.func @attention_blocks_planes(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<3x2x16xi32>) {
  // expected-error @+1 {{'veomni.attention' op segment_ids 'tensor<3x2x16xi32>' of rank 3 must be [2, batch, sequence] (segment ids, then bidirectional blocks)}}
  %0 = veomni.attention %q, %k, %k segments %s {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<3x2x16xi32>
  return
}

// -----

func.func @attention_blocks_need_causal(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<2x2x16xi32>) {
  // expected-error @+1 {{'veomni.attention' op bidirectional blocks (segment_ids 'tensor<2x2x16xi32>') need causal attention}}
  %0 = veomni.attention %q, %k, %k segments %s {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x2x16xi32>
  return
}

// -----

func.func @attention_blocks_batch(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<2x1x16xi32>) {
  // expected-error @+1 {{'veomni.attention' op batch size differs: query 'tensor<2x16x8x64xf32>' has 2 but segment_ids 'tensor<2x1x16xi32>' has 1}}
  %0 = veomni.attention %q, %k, %k segments %s {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x1x16xi32>
  return
}

// -----

func.func @attention_segments_batch(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<1x16xi64>) {
  // expected-error @+1 {{'veomni.attention' op batch size differs: query 'tensor<2x16x8x64xf32>' has 2 but segment_ids 'tensor<1x16xi64>' has 1}}
  %0 = veomni.attention %q, %k, %k segments %s {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<1x16xi64>
  return
}

// -----

func.func @attention_segments_length(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>, %s: tensor<2x8xi32>) {
  // expected-error @+1 {{'veomni.attention' op sequence length differs: query 'tensor<2x16x8x64xf32>' has 16 but segment_ids 'tensor<2x8xi32>' has 8}}
  %0 = veomni.attention %q, %k, %k segments %s {scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x8xi32>
  return
}

// -----

func.func @attention_no_scale(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op requires attribute 'scale'}}
  %0 = veomni.attention %q, %k, %k {causal} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

func.func @attention_scale(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>) {
  // expected-error @+1 {{'veomni.attention' op scale must be positive, got -1.250000e-01}}
  %0 = veomni.attention %q, %k, %k {scale = -0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// cross_entropy
//===----------------------------------------------------------------------===//

func.func @cross_entropy_scalar_logits(%l: tensor<f32>, %y: tensor<i64>) {
  // expected-error @+1 {{'veomni.cross_entropy' op logits must have a vocabulary dimension, got 'tensor<f32>'}}
  %0 = veomni.cross_entropy %l, %y : tensor<f32>, tensor<i64>
  return
}

// -----

func.func @cross_entropy_labels(%l: tensor<2x16x1000xf32>, %y: tensor<2x15xi64>) {
  // expected-error @+1 {{'veomni.cross_entropy' op labels 'tensor<2x15xi64>' must have the shape of logits 'tensor<2x16x1000xf32>' without its last (vocabulary) dimension}}
  %0 = veomni.cross_entropy %l, %y : tensor<2x16x1000xf32>, tensor<2x15xi64>
  return
}

// -----

func.func @cross_entropy_labels_rank(%l: tensor<2x16x1000xf32>, %y: tensor<32xi32>) {
  // expected-error @+1 {{'veomni.cross_entropy' op labels 'tensor<32xi32>' must have the shape of logits 'tensor<2x16x1000xf32>'}}
  %0 = veomni.cross_entropy %l, %y {reduction = #veomni<loss_reduction none>} : tensor<2x16x1000xf32>, tensor<32xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe_topk, moe_dispatch, moe_combine
//===----------------------------------------------------------------------===//

func.func @moe_topk_rank(%r: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'veomni.moe_topk' op logits must have rank 2, got 'tensor<2x16x8xf32>'}}
  %w, %i = veomni.moe_topk %r {k = 2} : tensor<2x16x8xf32>
  return
}

// -----

func.func @moe_topk_no_k(%r: tensor<32x8xf32>) {
  // expected-error @+1 {{'veomni.moe_topk' op requires attribute 'k'}}
  %w, %i = veomni.moe_topk %r {normalize} : tensor<32x8xf32>
  return
}

// -----

func.func @moe_topk_k_zero(%r: tensor<32x8xf32>) {
  // expected-error @+1 {{'veomni.moe_topk' op k = 0 must be in [1, 8], the expert count of logits 'tensor<32x8xf32>'}}
  %w, %i = veomni.moe_topk %r {k = 0} : tensor<32x8xf32>
  return
}

// -----

func.func @moe_topk_k_too_large(%r: tensor<32x8xbf16>) {
  // expected-error @+1 {{'veomni.moe_topk' op k = 9 must be in [1, 8], the expert count of logits 'tensor<32x8xbf16>'}}
  %w, %i = veomni.moe_topk %r {k = 9, normalize} : tensor<32x8xbf16>
  return
}

// -----

func.func @moe_dispatch_input_rank(%x: tensor<2x32x64xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op input must have rank 2, got 'tensor<2x32x64xf32>'}}
  %xs, %g = veomni.moe_dispatch %x, %i {num_experts = 8} : tensor<2x32x64xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_dispatch_indices_rank(%x: tensor<32x64xf32>, %i: tensor<64xi32>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op indices must have rank 2, got 'tensor<64xi32>'}}
  %xs, %g = veomni.moe_dispatch %x, %i {num_experts = 8} : tensor<32x64xf32>, tensor<64xi32>
  return
}

// -----

func.func @moe_dispatch_tokens(%x: tensor<32x64xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op token count differs: input 'tensor<32x64xf32>' has 32 but indices 'tensor<16x2xi32>' has 16}}
  %xs, %g = veomni.moe_dispatch %x, %i {num_experts = 8} : tensor<32x64xf32>, tensor<16x2xi32>
  return
}

// -----

func.func @moe_dispatch_no_experts(%x: tensor<32x64xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op requires attribute 'num_experts'}}
  %xs, %g = veomni.moe_dispatch %x, %i : tensor<32x64xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_dispatch_zero_experts(%x: tensor<32x64xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op num_experts must be >= 1, got 0}}
  %xs, %g = veomni.moe_dispatch %x, %i {num_experts = 0} : tensor<32x64xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_dispatch_too_many_k(%x: tensor<32x64xf32>, %i: tensor<32x4xi64>) {
  // expected-error @+1 {{'veomni.moe_dispatch' op indices 'tensor<32x4xi64>' route each token to more than the 2 experts}}
  %xs, %g = veomni.moe_dispatch %x, %i {num_experts = 2} : tensor<32x64xf32>, tensor<32x4xi64>
  return
}

// -----

func.func @moe_combine_input_rank(%y: tensor<64xf32>, %w: tensor<32x2xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op input must have rank 2, got 'tensor<64xf32>'}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64xf32>, tensor<32x2xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_combine_weights_rank(%y: tensor<64x64xf32>, %w: tensor<64xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op weights must have rank 2, got 'tensor<64xf32>'}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64x64xf32>, tensor<64xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_combine_element_type(%y: tensor<64x64xbf16>, %w: tensor<32x2xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op input 'tensor<64x64xbf16>' and weights 'tensor<32x2xf32>' have different element types}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64x64xbf16>, tensor<32x2xf32>, tensor<32x2xi32>
  return
}

// -----

func.func @moe_combine_indices_rank(%y: tensor<64x64xf32>, %w: tensor<32x2xf32>, %i: tensor<32x2x1xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op indices must have rank 2, got 'tensor<32x2x1xi32>'}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x2x1xi32>
  return
}

// -----

func.func @moe_combine_tokens(%y: tensor<64x64xf32>, %w: tensor<32x2xf32>, %i: tensor<16x2xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op token count differs: weights 'tensor<32x2xf32>' has 32 but indices 'tensor<16x2xi32>' has 16}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64x64xf32>, tensor<32x2xf32>, tensor<16x2xi32>
  return
}

// -----

func.func @moe_combine_top_k(%y: tensor<64x64xf32>, %w: tensor<32x2xf32>, %i: tensor<32x4xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op top-k differs: weights 'tensor<32x2xf32>' has 2 but indices 'tensor<32x4xi32>' has 4}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x4xi32>
  return
}

// -----

func.func @moe_combine_rows(%y: tensor<32x64xf32>, %w: tensor<32x2xf32>, %i: tensor<32x2xi32>) {
  // expected-error @+1 {{'veomni.moe_combine' op input 'tensor<32x64xf32>' must have tokens * k = 64 rows for indices 'tensor<32x2xi32>'}}
  %0 = veomni.moe_combine %y, %w, %i : tensor<32x64xf32>, tensor<32x2xf32>, tensor<32x2xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Function argument attributes
//===----------------------------------------------------------------------===//

// expected-error @+1 {{unknown veomni argument attribute 'veomni.parameter' on argument #1}}
func.func @unknown_arg_attr(%x: tensor<4xf32>, %w: tensor<4xf32> {veomni.parameter = "w"}) {
  return
}

// -----

// expected-error @+1 {{'veomni.param' on argument #0 must be a non-empty string, got 1 : i64}}
func.func @non_string_arg_attr(%w: tensor<4xf32> {veomni.param = 1}) {
  return
}

// -----

// expected-error @+1 {{'veomni.input' on argument #0 must be a non-empty string, got ""}}
func.func @empty_arg_attr(%ids: tensor<2x16xi32> {veomni.input = ""}) {
  return
}

// -----

// expected-error @+1 {{'veomni.input = "step"' is on argument #1 of type 'i64', neither a ranked tensor nor a buffer}}
func.func @non_tensor_arg_attr(%x: tensor<4xf32>, %step: i64 {veomni.input = "step"}) {
  return
}

// -----

// expected-error @+1 {{'veomni.param = "w"' is on argument #0 of type 'tensor<*xf32>'}}
func.func @unranked_arg_attr(%w: tensor<*xf32> {veomni.param = "w"}) {
  return
}

// -----

// Attributes of the wrong kind are caught before inference reads them.
func.func @rms_norm_integer_epsilon(%x: tensor<2x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op attribute 'epsilon' must be a float, got 1 : i64}}
  %0 = veomni.rms_norm %x, %w {epsilon = 1 : i64} : tensor<2x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rope_integer_theta(%x: tensor<1x4x2x8xf32>, %p: tensor<1x4xi32>) {
  // expected-error @+1 {{'veomni.rope' op attribute 'theta' must be a float, got 10000 : i64}}
  %0 = veomni.rope %x, %p {theta = 10000 : i64} : tensor<1x4x2x8xf32>, tensor<1x4xi32>
  return
}

// -----

func.func @attention_integer_scale(%q: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'veomni.attention' op attribute 'scale' must be a float, got 1 : i64}}
  %0 = veomni.attention %q, %q, %q {scale = 1 : i64} : tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>
  return
}

// -----

func.func @attention_zero_kv_heads(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x0x8xf32>) {
  // expected-error @+1 {{'veomni.attention' op operand #1 'tensor<1x2x0x8xf32>' has an empty dimension}}
  %0 = veomni.attention %q, %k, %k {scale = 1.0 : f64} : tensor<1x2x4x8xf32>, tensor<1x2x0x8xf32>, tensor<1x2x0x8xf32>
  return
}

// -----

func.func @moe_topk_string_k(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{'veomni.moe_topk' op attribute 'k' must be an integer, got "x"}}
  %w, %i = veomni.moe_topk %l {k = "x"} : tensor<4x8xf32>
  return
}

// -----

func.func @matmul_dynamic_in_custom_form(%a: tensor<4x?xf32>, %b: tensor<4x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op operand #0 must be a statically shaped tensor, got 'tensor<4x?xf32>'}}
  %0 = veomni.matmul %a, %b : tensor<4x?xf32>, tensor<4x4xf32>
  return
}

// -----

func.func @conv1d_dynamic_in_custom_form(%x: tensor<1x4x?xf32>, %w: tensor<4x4x3xf32>) {
  // expected-error @+1 {{'veomni.conv1d' op operand #0 must be a statically shaped tensor, got 'tensor<1x4x?xf32>'}}
  %0 = veomni.conv1d %x, %w : tensor<1x4x?xf32>, tensor<4x4x3xf32>
  return
}

// -----

func.func @matmul_non_unit_transpose(%a: tensor<4x4xf32>, %b: tensor<4x4xf32>) {
  // expected-error @+1 {{'veomni.matmul' op attribute 'transpose_lhs' must be a unit attribute, got 1 : i64}}
  %0 = veomni.matmul %a, %b {transpose_lhs = 1 : i64} : tensor<4x4xf32>, tensor<4x4xf32>
  return
}

// -----

// A huge step keeps one element; the size computation must not overflow.
func.func @slice_huge_step(%x: tensor<8xf32>) -> tensor<1xf32> {
  %0 = veomni.slice %x start = [3] limit = [8] step = [9223372036854775807] : tensor<8xf32>
  return %0 : tensor<1xf32>
}

// -----

func.func @attention_grad_wrong_grad(%q: tensor<1x4x2x8xf32>, %g: tensor<1x4x2x4xf32>) {
  // expected-error @+1 {{'veomni.attention_grad' op grad 'tensor<1x4x2x4xf32>' must have the forward result's type 'tensor<1x4x2x8xf32>'}}
  %dq, %dk, %dv = veomni.attention_grad %q, %q, %q grad %g {scale = 0.5 : f64} : tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x4xf32>
  return
}

// -----

func.func @cross_entropy_grad_wrong_grad(%l: tensor<4x8xf32>, %y: tensor<4xi32>, %g: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.cross_entropy_grad' op grad 'tensor<4xf32>' must have the forward result's type 'tensor<f32>'}}
  %d = veomni.cross_entropy_grad %l, %y, %g : tensor<4x8xf32>, tensor<4xi32>, tensor<4xf32>
  return
}

// -----

func.func @rms_norm_grad_bad_weight(%x: tensor<2x8xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.rms_norm' op normalised dimension differs: input 'tensor<2x8xf32>' has 8 but weight 'tensor<4xf32>' has 4}}
  %dx, %dw = veomni.rms_norm_grad %x, %w, %x {epsilon = 1.0e-5 : f64} : tensor<2x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @gelu_grad_integer(%x: tensor<4xi32>) {
  // expected-error @+1 {{'veomni.gelu_grad' op operand #0 must be statically shaped tensor of 32-bit float or bfloat16 type or 16-bit float values, but got 'tensor<4xi32>'}}
  %d = veomni.gelu_grad %x, %x : tensor<4xi32>
  return
}

// -----

func.func @gelu_grad_mismatch(%x: tensor<4xf32>, %g: tensor<5xf32>) {
  // expected-error @+1 {{'veomni.gelu_grad' op failed to verify that all of {input, grad} have same type}}
  %d = "veomni.gelu_grad"(%x, %g) : (tensor<4xf32>, tensor<5xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @layer_norm_grad_bad_bias(%x: tensor<2x8xf32>, %w: tensor<8xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{'veomni.layer_norm' op normalised dimension differs: input 'tensor<2x8xf32>' has 8 but bias 'tensor<4xf32>' has 4}}
  %d:3 = veomni.layer_norm_grad %x, %w, %b grad %x {epsilon = 1.0e-5 : f64} : tensor<2x8xf32>, tensor<8xf32>, tensor<4xf32>
  return
}

// -----

func.func @slice_grad_wrong_grad(%g: tensor<2x3xf32>) {
  // expected-error @+1 {{'veomni.slice_grad' op grad 'tensor<2x3xf32>' must have the forward result's type 'tensor<2x4xf32>'}}
  %d = veomni.slice_grad %g start = [0, 1] limit = [2, 8] step = [1, 2] : tensor<2x3xf32> to tensor<2x8xf32>
  return
}

// -----

func.func @slice_grad_outside(%g: tensor<2x4xf32>) {
  // expected-error @+1 {{'veomni.slice' op dimension 1 slice [1, 9) is empty or outside input 'tensor<2x8xf32>'}}
  %d = veomni.slice_grad %g start = [0, 1] limit = [2, 9] step = [1, 2] : tensor<2x4xf32> to tensor<2x8xf32>
  return
}

// -----

func.func @conv1d_grad_wrong_grad(%x: tensor<2x8x30xf32>, %w: tensor<4x8x3xf32>, %g: tensor<2x4x28xf32>) {
  // expected-error @+1 {{'veomni.conv1d_grad' op grad 'tensor<2x4x28xf32>' must have the forward result's type 'tensor<2x4x15xf32>'}}
  %d:2 = veomni.conv1d_grad %x, %w grad %g {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x28xf32>
  return
}

// -----

func.func @grouped_matmul_weight_grad_wrong_grad(%x: tensor<12x64xf32>, %w: tensor<4x32x64xf32>, %gs: tensor<4xi32>, %g: tensor<12x64xf32>) {
  // expected-error @+1 {{'veomni.grouped_matmul_weight_grad' op grad 'tensor<12x64xf32>' must have the forward result's type 'tensor<12x32xf32>'}}
  %d = veomni.grouped_matmul_weight_grad %x, %w, %gs grad %g {transpose_weight} : tensor<12x64xf32>, tensor<4x32x64xf32>, tensor<4xi32>, tensor<12x64xf32>
  return
}

// -----

func.func @moe_topk_grad_wrong_grad(%l: tensor<6x4xf32>, %g: tensor<6x3xf32>) {
  // expected-error @+1 {{'veomni.moe_topk_grad' op grad 'tensor<6x3xf32>' must have the forward result's type 'tensor<6x2xf32>'}}
  %d = veomni.moe_topk_grad %l, %g {k = 2} : tensor<6x4xf32>, tensor<6x3xf32>
  return
}

// -----

func.func @moe_topk_grad_bad_k(%l: tensor<6x4xf32>, %g: tensor<6x5xf32>) {
  // expected-error @+1 {{'veomni.moe_topk' op k = 5 must be in [1, 4], the expert count of logits 'tensor<6x4xf32>'}}
  %d = veomni.moe_topk_grad %l, %g {k = 5} : tensor<6x4xf32>, tensor<6x5xf32>
  return
}

// -----

func.func @moe_combine_grad_wrong_grad(%x: tensor<12x64xf32>, %w: tensor<6x2xf32>, %i: tensor<6x2xi32>, %g: tensor<12x64xf32>) {
  // expected-error @+1 {{'veomni.moe_combine_grad' op grad 'tensor<12x64xf32>' must have the forward result's type 'tensor<6x64xf32>'}}
  %d:2 = veomni.moe_combine_grad %x, %w, %i grad %g : tensor<12x64xf32>, tensor<6x2xf32>, tensor<6x2xi32>, tensor<12x64xf32>
  return
}

// -----

func.func @reduce_max_grad_wrong_grad(%x: tensor<2x16xf32>, %g: tensor<16xf32>) {
  // expected-error @+1 {{'veomni.reduce_max_grad' op grad 'tensor<16xf32>' must have the forward result's type 'tensor<2xf32>'}}
  %d = veomni.reduce_max_grad %x, %g dims = [1] : tensor<2x16xf32>, tensor<16xf32>
  return
}

// -----

// expected-error @+1 {{'veomni.role' on argument #0 must be an argument role, got #veomni<result_role loss>}}
func.func @argument_role(%x: tensor<4xf32> {veomni.role = #veomni<result_role loss>}) {
  return
}

// -----

// expected-error @+1 {{'veomni.role' on result #0 must be a result role, got "loss"}}
func.func @result_role(%x: tensor<4xf32>) -> (tensor<4xf32> {veomni.role = "loss"}) {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{'veomni.role' on an operation must be a function's role, got #veomni<argument_role step>}}
func.func @function_role() attributes {veomni.role = #veomni<argument_role step>} {
  return
}

// -----

// expected-error @+1 {{'veomni.init' on argument #0 must be "normal", "ones", "zeros" or "lora_a", got "twos"}}
func.func @init(%x: tensor<4xf32> {veomni.param = "w", veomni.init = "twos"}) {
  return
}

// -----

// expected-error @+1 {{'veomni.frozen' on argument #0 must be a unit}}
func.func @frozen(%x: tensor<4xf32> {veomni.param = "w", veomni.frozen = "yes"}) {
  return
}

// -----

// expected-error @+1 {{unknown veomni result attribute 'veomni.gradient' on result #0}}
func.func @result_attribute(%x: tensor<4xf32>) -> (tensor<4xf32> {veomni.gradient = "x"}) {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{unknown module kind 'decoder'}}
func.func @module() attributes {test.m = #veomni.module<decoder, layer = 1>} {
  return
}

// -----

// expected-error @+1 {{factor 'a' is not one of i, j, ... z, z_1, z_2, ...}}
func.func @rule_factor_name() attributes {test.r = #veomni.sharding_rule<([a]) -> ([a]) {a=2}>} {
  return
}

// -----

// expected-error @+1 {{factor 'j' has no positive size}}
func.func @rule_factor_size() attributes {test.r = #veomni.sharding_rule<([i, j]) -> ([i]) {i=2}>} {
  return
}

// -----

// expected-error @+1 {{unknown sharding rule list 'mystery'}}
func.func @rule_list() attributes {test.r = #veomni.sharding_rule<([i]) -> ([i]) {i=2} mystery={i}>} {
  return
}

// -----

// expected-error @+1 {{'veomni.token_dims' on argument #0 must be array<i64: batch, sequence> of two of its dimensions, got array<i64: 1, 2>}}
func.func @token_dims(%x: tensor<2x16xi32> {veomni.input = "ids", veomni.token_dims = array<i64: 1, 2>}) {
  return
}

//===----------------------------------------------------------------------===//
// linear_cross_entropy (written by veomni-fuse-loss)
//===----------------------------------------------------------------------===//

// -----

func.func @lce_workspace_bf16(%h: tensor<8x4xbf16>, %w: tensor<16x4xbf16>, %y: tensor<8xi32>, %g: tensor<f32>) {
  // expected-error @+1 {{'veomni.linear_cross_entropy' op workspace 'tensor<4x16xf32>' must be [chunk >= 1 + 4, 16]}}
  %l, %dh, %dw, %ws = veomni.linear_cross_entropy %h, %w, %y, %g : tensor<8x4xbf16>, tensor<16x4xbf16>, tensor<8xi32>, tensor<f32> -> tensor<f32>, tensor<8x4xbf16>, tensor<16x4xbf16>, tensor<4x16xf32>
  return
}

// -----

func.func @lce_weight_type(%h: tensor<8x4xf32>, %w: tensor<16x4xbf16>, %y: tensor<8xi32>, %g: tensor<f32>) {
  // expected-error @+1 {{'veomni.linear_cross_entropy' op weight 'tensor<16x4xbf16>' and hidden 'tensor<8x4xf32>' must have one element type}}
  %l, %dh, %dw, %ws = veomni.linear_cross_entropy %h, %w, %y, %g : tensor<8x4xf32>, tensor<16x4xbf16>, tensor<8xi32>, tensor<f32> -> tensor<f32>, tensor<8x4xf32>, tensor<16x4xbf16>, tensor<4x16xf32>
  return
}

// -----

func.func @lce_labels(%h: tensor<8x4xf32>, %w: tensor<16x4xf32>, %y: tensor<7xi32>, %g: tensor<f32>) {
  // expected-error @+1 {{'veomni.linear_cross_entropy' op labels 'tensor<7xi32>' must have the shape of hidden 'tensor<8x4xf32>' without its last dimension}}
  %l, %dh, %dw, %ws = veomni.linear_cross_entropy %h, %w, %y, %g : tensor<8x4xf32>, tensor<16x4xf32>, tensor<7xi32>, tensor<f32> -> tensor<f32>, tensor<8x4xf32>, tensor<16x4xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @lce_per_row(%h: tensor<8x4xf32>, %w: tensor<16x4xf32>, %y: tensor<8xi32>, %g: tensor<f32>) {
  // expected-error @+1 {{'veomni.linear_cross_entropy' op takes a mean or a sum, not per-row losses}}
  %l, %dh, %dw, %ws = veomni.linear_cross_entropy %h, %w, %y, %g {reduction = #veomni<loss_reduction none>} : tensor<8x4xf32>, tensor<16x4xf32>, tensor<8xi32>, tensor<f32> -> tensor<f32>, tensor<8x4xf32>, tensor<16x4xf32>, tensor<4x16xf32>
  return
}
