// RUN: veomni-opt %s --veomni-freeze="func=tower patterns=visual.*" --veomni-autodiff=func=tower --canonicalize --veomni-optimizer="func=tower total-steps=10" | FileCheck %s
// RUN: not veomni-opt %s --veomni-freeze="func=tower patterns=vision.*" 2>&1 | FileCheck %s --check-prefix=TYPO
// RUN: not veomni-opt %s --veomni-freeze="func=tower patterns=*" 2>&1 | FileCheck %s --check-prefix=ALL

// A frozen tower feeding a trained head: the tower's weight (matched by
// "visual.*" after the "model." prefix) is marked, gets no gradient and no
// state, and nothing of the tower is differentiated: the only backward
// matmul is the head's weight gradient (no cotangent for the features).
// CHECK-LABEL: func.func @tower
// CHECK-SAME: veomni.frozen, veomni.param = "model.visual.proj.weight"
// CHECK-NOT: optimizer.exp_avg.model.visual
// CHECK-SAME: veomni.state = "optimizer.exp_avg.lm_head.weight"
// CHECK-NOT: optimizer.exp_avg.model.visual
// CHECK-SAME: veomni.update = "lm_head.weight"
// CHECK-NOT: veomni.update = "model.visual.proj.weight"
// CHECK-SAME: function_role train_step
// CHECK: veomni.matmul %{{.*}}, %{{.*}} {transpose_rhs} : tensor<4x8xf32>, tensor<16x8xf32>
// CHECK: veomni.matmul %{{.*}}, %{{.*}} {transpose_rhs} : tensor<4x16xf32>, tensor<2x16xf32>
// CHECK: veomni.matmul %{{.*}}, %{{.*}} {transpose_lhs} : tensor<4x16xf32>, tensor<4x2xf32>
// CHECK-NOT: veomni.matmul
// TYPO: train.freeze: 'vision.*' matches no parameter (names are Hugging Face's, such as 'model.visual.proj.weight')
// ALL: train.freeze freezes every parameter: nothing is left to train
func.func @tower(
    %w: tensor<16x8xf32> {veomni.param = "model.visual.proj.weight"},
    %h: tensor<2x16xf32> {veomni.param = "lm_head.weight"},
    %x: tensor<4x8xf32> {veomni.input = "pixels"}) -> tensor<f32> {
  %f = veomni.matmul %x, %w {transpose_rhs} : tensor<4x8xf32>, tensor<16x8xf32>
  %y = veomni.matmul %f, %h {transpose_rhs} : tensor<4x16xf32>, tensor<2x16xf32>
  %l = veomni.reduce sum %y dims = [0, 1] : tensor<4x2xf32>
  return %l : tensor<f32>
}
