// nnf_gemm_seq: the GEMM address generator: one k-step a cycle, no bubbles between tiles.
//
// Loop nest (one iteration a cycle; docs/systolic.md "Dataflow (GEMM)"):
//   for n < n_words:                         output-channel word
//     for each tile of ROWS output pixels:   m0 = 0, ROWS, ...
//       for ki < kh, kj < kw, q < k_words:   input word cw = n*k_step + q of tap (ki, kj)
//         for p < COLS:                      lane p of that word = k-step; row p's read phase
// In phase p < ROWS the sequencer requests the tap (pixel m0+p, ki, kj, cw) for row p from
// nnf_tap_agen: each row reads one word every COLS cycles, in its own phase, so the rows come
// out skewed by one cycle each as the array needs.  The pixel walk (oh, ow, ihp = oh*sh - pt,
// iwp = ow*sw - pl) and the kernel offsets (kdh = ki*dh, kdw = kj*dw) are running sums.
// w_addr = w_base + n*K + k counts every cycle (tiles of one n re-read the same K words).
//
// With `shared`, a codebook phase first reads the 2^idx_bits entries at PMEM[p_base + n_words + e],
// one a cycle (cb_re/cb_addr/cb_e).
//
// Outputs are registers valid in the issue cycle (the tap request's t_v/t_pv are a compare of
// registers): k0 marks k-step 0 of each tile; after the last k-step, `flush` (with k0) marks one
// more wavefront that pushes the last tile out of the array.  Latency: the first k-step issues
// the cycle after go (after the codebook phase with `shared`).
module nnf_gemm_seq #(
    parameter integer ROWS = 4,
    parameter integer COLS = 4,
    parameter integer TAG_W = 2
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             go,
    input  wire [15:0]      out_h,
    input  wire [15:0]      out_w,
    input  wire [15:0]      n_words,
    input  wire [15:0]      k_words,
    input  wire [15:0]      k_step,
    input  wire [7:0]       kh,
    input  wire [7:0]       kw,
    input  wire [7:0]       sh,
    input  wire [7:0]       sw,
    input  wire [7:0]       dh,
    input  wire [7:0]       dw,
    input  wire [7:0]       pt,
    input  wire [7:0]       pl,
    input  wire [31:0]      w_base,
    input  wire [31:0]      p_base,
    input  wire             shared,
    input  wire [2:0]       idx_bits,
    output reg              cb_re,
    output reg  [31:0]      cb_addr,
    output reg  [7:0]       cb_e,
    output wire             t_v,
    output wire             t_pv,
    output wire [25:0]      t_ihp,
    output wire [25:0]      t_iwp,
    output wire [15:0]      t_kdh,
    output wire [15:0]      t_kdw,
    output wire [15:0]      t_cw,
    output wire [TAG_W-1:0] t_row,
    output reg  [31:0]      w_addr,
    output reg              k0,
    output reg  [31:0]      p_addr,
    output reg              flush
);
    localparam [1:0] IDLE = 2'd0, CB = 2'd1, BODY = 2'd2;

    reg [1:0]  phase;
    reg [7:0]  p;
    reg [15:0] q, n, cw, cwn, kdh, kdw;
    reg [7:0]  ki, kj;
    reg [15:0] oh, ow, ts_oh, ts_ow;       // current pixel, tile start pixel
    reg [25:0] ihp, iwp, ts_ihp, ts_iwp;
    reg [31:0] wn_base;

    wire [25:0] neg_pt = 26'd0 - {18'd0, pt};
    wire [25:0] neg_pl = 26'd0 - {18'd0, pl};
    wire empty = (n_words == 16'd0) | (k_words == 16'd0) | (kh == 8'd0) | (kw == 8'd0) |
                 (out_h == 16'd0) | (out_w == 16'd0);

    // the pixel after the current one
    wire        wrap_ow = ({1'b0, ow} + 17'd1 == {1'b0, out_w});
    wire [16:0] nx_oh = wrap_ow ? {1'b0, oh} + 17'd1 : {1'b0, oh};
    wire [15:0] nx_ow = wrap_ow ? 16'd0 : ow + 16'd1;
    wire [25:0] nx_ihp = wrap_ow ? ihp + {18'd0, sh} : ihp;
    wire [25:0] nx_iwp = wrap_ow ? neg_pl : iwp + {18'd0, sw};

    wire last_p = ({24'd0, p} == COLS - 1);
    wire last_q = ({1'b0, q} + 17'd1 == {1'b0, k_words});
    wire last_kj = ({1'b0, kj} + 9'd1 == {1'b0, kw});
    wire last_ki = ({1'b0, ki} + 9'd1 == {1'b0, kh});
    wire tile_end = last_p & last_q & last_kj & last_ki;
    wire last_tile = (nx_oh >= {1'b0, out_h});
    wire last_n = ({1'b0, n} + 17'd1 == {1'b0, n_words});
    wire [7:0] cb_last = (8'd1 << idx_bits) - 8'd1;

    assign t_v = (phase == BODY) & ({24'd0, p} < ROWS);
    assign t_pv = (oh < out_h);
    assign t_ihp = ihp;
    assign t_iwp = iwp;
    assign t_kdh = kdh;
    assign t_kdw = kdw;
    assign t_cw = cw;
    assign t_row = p[TAG_W-1:0];

    always @(posedge clk) begin
        if (rst) begin
            phase <= IDLE;
            cb_re <= 1'b0;
            k0 <= 1'b0;
            flush <= 1'b0;
        end else if (go) begin
            p <= 8'd0; q <= 16'd0; n <= 16'd0; ki <= 8'd0; kj <= 8'd0;
            cw <= 16'd0; cwn <= 16'd0; kdh <= 16'd0; kdw <= 16'd0;
            oh <= 16'd0; ow <= 16'd0; ihp <= neg_pt; iwp <= neg_pl;
            ts_oh <= 16'd0; ts_ow <= 16'd0; ts_ihp <= neg_pt; ts_iwp <= neg_pl;
            w_addr <= w_base; wn_base <= w_base; p_addr <= p_base;
            cb_e <= 8'd0;
            cb_addr <= p_base + {16'd0, n_words};
            if (shared) begin
                phase <= CB; cb_re <= 1'b1; k0 <= 1'b0; flush <= 1'b0;
            end else begin
                phase <= empty ? IDLE : BODY; k0 <= 1'b1; flush <= empty;
            end
        end else begin
            k0 <= 1'b0;
            flush <= 1'b0;
            case (phase)
                CB: begin
                    cb_e <= cb_e + 8'd1;
                    cb_addr <= cb_addr + 32'd1;
                    if (cb_e == cb_last) begin
                        cb_re <= 1'b0;
                        phase <= empty ? IDLE : BODY;
                        k0 <= 1'b1;
                        flush <= empty;
                    end
                end
                BODY: begin
                    w_addr <= w_addr + 32'd1;
                    p <= last_p ? 8'd0 : p + 8'd1;
                    k0 <= tile_end;
                    if (!last_p) begin
                        if ({24'd0, p} + 32'd1 < ROWS) begin
                            oh <= nx_oh[15:0]; ow <= nx_ow; ihp <= nx_ihp; iwp <= nx_iwp;
                        end
                    end else if (!tile_end) begin
                        oh <= ts_oh; ow <= ts_ow; ihp <= ts_ihp; iwp <= ts_iwp;
                        if (!last_q) begin
                            q <= q + 16'd1; cw <= cw + 16'd1;
                        end else begin
                            q <= 16'd0; cw <= cwn;
                            if (!last_kj) begin
                                kj <= kj + 8'd1; kdw <= kdw + {8'd0, dw};
                            end else begin
                                kj <= 8'd0; kdw <= 16'd0; ki <= ki + 8'd1; kdh <= kdh + {8'd0, dh};
                            end
                        end
                    end else begin
                        q <= 16'd0; kj <= 8'd0; ki <= 8'd0; kdw <= 16'd0; kdh <= 16'd0;
                        if (!last_tile) begin
                            // next tile of this output-channel word: the pixel after this tile's last row
                            oh <= nx_oh[15:0]; ow <= nx_ow; ihp <= nx_ihp; iwp <= nx_iwp;
                            ts_oh <= nx_oh[15:0]; ts_ow <= nx_ow; ts_ihp <= nx_ihp; ts_iwp <= nx_iwp;
                            cw <= cwn;
                            w_addr <= wn_base;
                        end else begin
                            // next output-channel word: back to pixel 0, the next K weights
                            oh <= 16'd0; ow <= 16'd0; ihp <= neg_pt; iwp <= neg_pl;
                            ts_oh <= 16'd0; ts_ow <= 16'd0; ts_ihp <= neg_pt; ts_iwp <= neg_pl;
                            n <= n + 16'd1;
                            cwn <= cwn + k_step; cw <= cwn + k_step;
                            p_addr <= p_addr + 32'd1;
                            wn_base <= w_addr + 32'd1;
                            if (last_n) begin
                                phase <= IDLE;
                                flush <= 1'b1;
                            end
                        end
                    end
                end
                default: ;
            endcase
        end
    end
endmodule
