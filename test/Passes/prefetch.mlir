// RUN: veomni-opt %s --veomni-prefetch | FileCheck %s
// RUN: veomni-opt %s --veomni-prefetch="distance=0" | FileCheck %s --check-prefix=NONE

// Three layers whose weights are gathered right before their matmuls, as
// veomni-partition leaves them. With prefetch, layer 1's gather is issued
// before layer 0's matmul and layer 2's before layer 1's; the first stays.
// A gather of a computed value does not move.
// CHECK-LABEL: func.func @layers
// CHECK: %[[G0:.*]] = dist.all_gather %arg1
// CHECK-NEXT: %[[G1:.*]] = dist.all_gather %arg2
// CHECK-NEXT: %[[H0:.*]] = veomni.matmul %arg0, %[[G0]]
// CHECK-NEXT: %[[G2:.*]] = dist.all_gather %arg3
// CHECK-NEXT: %[[H1:.*]] = veomni.matmul %[[H0]], %[[G1]]
// CHECK-NEXT: %[[H2:.*]] = veomni.matmul %[[H1]], %[[G2]]
// CHECK-NEXT: dist.all_gather %[[H2]]
// NONE: dist.all_gather %arg1
// NONE-NEXT: veomni.matmul
// NONE-NEXT: dist.all_gather %arg2
// NONE-NEXT: veomni.matmul
// NONE-NEXT: dist.all_gather %arg3
module {
  dist.mesh @mesh = <["dp_shard" = 2]>
  func.func @layers(%x: tensor<4x8xf32>, %w0: tensor<4x8xf32>, %w1: tensor<4x8xf32>, %w2: tensor<4x8xf32>) -> tensor<8x8xf32> {
    %g0 = dist.all_gather %w0 mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<4x8xf32> -> tensor<8x8xf32>
    %h0 = veomni.matmul %x, %g0 : tensor<4x8xf32>, tensor<8x8xf32>
    %g1 = dist.all_gather %w1 mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<4x8xf32> -> tensor<8x8xf32>
    %h1 = veomni.matmul %h0, %g1 : tensor<4x8xf32>, tensor<8x8xf32>
    %g2 = dist.all_gather %w2 mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<4x8xf32> -> tensor<8x8xf32>
    %h2 = veomni.matmul %h1, %g2 : tensor<4x8xf32>, tensor<8x8xf32>
    %y = dist.all_gather %h2 mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<4x8xf32> -> tensor<8x8xf32>
    return %y : tensor<8x8xf32>
  }
}
