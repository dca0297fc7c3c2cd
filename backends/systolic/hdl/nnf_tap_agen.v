// nnf_tap_agen: the scratchpad address of one kernel tap, one a cycle (GEMM and WINDOW).
//
//   ih = ihp + kdh, iw = iwp + kdw                 (ihp = oh*sh - pt, kdh = ki*dh, from the sequencer)
//   inb  = pv & 0 <= ih < in_h & 0 <= iw < in_w    (a tap outside the input reads as padding)
//   addr = in_base + (ih*in_w + iw)*in_ps + cw     (modulo the scratchpad's size)
//
// The sequencers keep ihp/iwp/kdh/kdw as running sums, so the only multipliers are the two
// AW x AW ones here (DSP-sized), shared by GEMM and WINDOW.  tag rides along unchanged.
// Latency: 5 cycles from the request (v, pv, ihp, ..., tag) to addr/inb_o/v_o/tag_o
// (1 ih, iw, 2 ih*in_w and the bounds, 3 +iw, 4 *in_ps, 5 +in_base+cw).  Both multiplies are
// nnf_mul_reg (operand and product registers, on ECP5 the MULT18X18D's own), so each stands
// between registers: stages 1-2 and 3-4.
module nnf_tap_agen #(
    parameter integer AW = 12,      // scratchpad address width (<= 32)
    parameter integer TAG_W = 4
) (
    input  wire             clk,
    input  wire             v,          // a tap is requested this cycle
    input  wire             pv,         // its output pixel exists (GEMM rows past the last pixel: 0)
    input  wire [25:0]      ihp,        // signed
    input  wire [25:0]      iwp,        // signed
    input  wire [15:0]      kdh,
    input  wire [15:0]      kdw,
    input  wire [15:0]      cw,
    input  wire [TAG_W-1:0] tag,
    input  wire [15:0]      in_h,
    input  wire [15:0]      in_w,
    input  wire [15:0]      in_ps,
    input  wire [31:0]      in_base,
    output wire [AW-1:0]    addr,
    output wire             inb_o,
    output wire             v_o,
    output wire [TAG_W-1:0] tag_o
);
    // 1: coordinates (ih, iw in full: the bounds are checked in stage 2, next to the multiply)
    wire signed [26:0] ih = $signed({ihp[25], ihp}) + $signed({11'd0, kdh});
    wire signed [26:0] iw = $signed({iwp[25], iwp}) + $signed({11'd0, kdw});
    wire [31:0] ih32 = {{5{ih[26]}}, ih};
    wire [31:0] base_cw = in_base + {16'd0, cw};
    wire [31:0] in_w32 = {16'd0, in_w};
    wire [31:0] in_ps32 = {16'd0, in_ps};
    reg signed [26:0] ih1, iw1;
    reg [AW-1:0] cw1;  // cw1.. = in_base + cw
    reg          pv1, v1;
    reg [TAG_W-1:0] tag1;
    always @(posedge clk) begin
        ih1 <= ih; iw1 <= iw; cw1 <= base_cw[AW-1:0];
        pv1 <= pv; v1 <= v; tag1 <= tag;
    end

    // 1, 2: ih * in_w (nnf_mul_reg: its operand registers are stage 1's, its product stage 2's);
    // 2: the bounds
    wire [2*AW-1:0] p2w;
    nnf_mul_reg #(.A_W(AW), .B_W(AW), .A_SIGNED(0), .B_SIGNED(0)) u_mul_w (
        .clk(clk), .a(ih32[AW-1:0]), .b(in_w32[AW-1:0]), .p(p2w));
    wire [AW-1:0] p2 = p2w[AW-1:0];
    wire inb = pv1 & (ih1 >= 27'sd0) & (ih1 < $signed({11'd0, in_h})) & (iw1 >= 27'sd0) &
               (iw1 < $signed({11'd0, in_w}));
    wire [31:0] iw32 = {{5{iw1[26]}}, iw1};
    reg [AW-1:0] iw2, cw2;
    reg          inb2, v2;
    reg [TAG_W-1:0] tag2;
    always @(posedge clk) begin
        iw2 <= iw32[AW-1:0]; cw2 <= cw1; inb2 <= inb; v2 <= v1; tag2 <= tag1;
    end

    // 3: + iw: the input pixel (into the next multiply's operand register)
    wire [AW-1:0] pix3 = p2 + iw2;
    reg [AW-1:0] cw3;
    reg          inb3, v3;
    reg [TAG_W-1:0] tag3;
    always @(posedge clk) begin
        cw3 <= cw2; inb3 <= inb2; v3 <= v2; tag3 <= tag2;
    end

    // 3, 4: * in_ps (nnf_mul_reg)
    wire [2*AW-1:0] p4w;
    nnf_mul_reg #(.A_W(AW), .B_W(AW), .A_SIGNED(0), .B_SIGNED(0)) u_mul_ps (
        .clk(clk), .a(pix3), .b(in_ps32[AW-1:0]), .p(p4w));
    wire [AW-1:0] p4 = p4w[AW-1:0];
    reg [AW-1:0] cw4;
    reg          inb4, v4;
    reg [TAG_W-1:0] tag4;
    always @(posedge clk) begin
        cw4 <= cw3; inb4 <= inb3; v4 <= v3; tag4 <= tag3;
    end

    // 5: + in_base + cw
    reg [AW-1:0] a5;
    reg          inb5, v5;
    reg [TAG_W-1:0] tag5;
    always @(posedge clk) begin
        a5 <= p4 + cw4;
        inb5 <= inb4; v5 <= v4; tag5 <= tag4;
    end

    assign addr = a5;
    assign inb_o = inb5;
    assign v_o = v5;
    assign tag_o = tag5;
endmodule
