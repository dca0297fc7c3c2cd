// nnf_window_seq: the WINDOW address generator, one tap a cycle.
//
//   for output pixel (oh, ow):  for word c < n_words:  for ki < kh, kj < kw:  tap (ki, kj) of word c
//
// Requests go to nnf_tap_agen (which checks bounds and forms the address); the tag is
// {first tap of the word, last tap of the word}.  The pixel walk (ihp = oh*sh - pt,
// iwp = ow*sw - pl) and the kernel offsets (kdh = ki*dh, kdw = kj*dw) are running sums.
// Latency: the first tap issues the cycle after go; `body` is high in every issue cycle.
// The loop-end conditions (lkj = (kj == kw-1), lki, lc, lwo, loh) and the first-tap flag are
// registers computed a cycle ahead: each from the counter's current value and a constant taken
// at go (kw-2, ...), or a constant when the counter restarts at 0.
module nnf_window_seq (
    input  wire        clk,
    input  wire        rst,
    input  wire        go,
    input  wire [15:0] out_h,
    input  wire [15:0] out_w,
    input  wire [15:0] n_words,
    input  wire [7:0]  kh,
    input  wire [7:0]  kw,
    input  wire [7:0]  sh,
    input  wire [7:0]  sw,
    input  wire [7:0]  dh,
    input  wire [7:0]  dw,
    input  wire [7:0]  pt,
    input  wire [7:0]  pl,
    output reg         body,
    output wire [25:0] t_ihp,
    output wire [25:0] t_iwp,
    output wire [15:0] t_kdh,
    output wire [15:0] t_kdw,
    output wire [15:0] t_cw,
    output wire [1:0]  t_tag        // {first tap, last tap}
);
    reg [15:0] oh, ow, c, kdh, kdw;
    reg [25:0] ihp, iwp;
    reg [7:0]  ki, kj;

    wire [25:0] neg_pt = 26'd0 - {18'd0, pt};
    wire [25:0] neg_pl = 26'd0 - {18'd0, pl};
    wire empty = (n_words == 16'd0) | (kh == 8'd0) | (kw == 8'd0) | (out_h == 16'd0) | (out_w == 16'd0);
    reg        lkj, lki, lc, lwo, loh, first;    // the loop-end flags, the first tap of a word
    reg        kj1, ki1, c1, ow1;                // a loop of one iteration
    reg [7:0]  kjm2, kim2;
    reg [15:0] cm2, owm2, ohm2;
    wire last_kj = lkj;
    wire last_ki = lki;
    wire last_c = lc;
    wire wrap_ow = lwo;
    wire last_oh = loh;

    assign t_ihp = ihp;
    assign t_iwp = iwp;
    assign t_kdh = kdh;
    assign t_kdw = kdw;
    assign t_cw = c;
    assign t_tag = {first, last_ki & last_kj};

    always @(posedge clk) begin
        if (rst) begin
            body <= 1'b0;
        end else if (go) begin
            body <= ~empty;
            oh <= 16'd0; ow <= 16'd0; c <= 16'd0; ki <= 8'd0; kj <= 8'd0;
            kdh <= 16'd0; kdw <= 16'd0; ihp <= neg_pt; iwp <= neg_pl;
            kj1 <= (kw == 8'd1); ki1 <= (kh == 8'd1); c1 <= (n_words == 16'd1); ow1 <= (out_w == 16'd1);
            lkj <= (kw == 8'd1); lki <= (kh == 8'd1); lc <= (n_words == 16'd1); lwo <= (out_w == 16'd1);
            loh <= (out_h == 16'd1); first <= 1'b1;
            kjm2 <= kw - 8'd2; kim2 <= kh - 8'd2; cm2 <= n_words - 16'd2; owm2 <= out_w - 16'd2;
            ohm2 <= out_h - 16'd2;
        end else if (body) begin
            first <= last_kj & last_ki;
            if (!last_kj) begin
                kj <= kj + 8'd1; kdw <= kdw + {8'd0, dw}; lkj <= (kj == kjm2);
            end else begin
                kj <= 8'd0; kdw <= 16'd0; lkj <= kj1;
                if (!last_ki) begin
                    ki <= ki + 8'd1; kdh <= kdh + {8'd0, dh}; lki <= (ki == kim2);
                end else begin
                    ki <= 8'd0; kdh <= 16'd0; lki <= ki1;
                    if (!last_c) begin
                        c <= c + 16'd1; lc <= (c == cm2);
                    end else begin
                        c <= 16'd0; lc <= c1;
                        if (!wrap_ow) begin
                            ow <= ow + 16'd1; iwp <= iwp + {18'd0, sw}; lwo <= (ow == owm2);
                        end else begin
                            ow <= 16'd0; iwp <= neg_pl; lwo <= ow1;
                            oh <= oh + 16'd1; ihp <= ihp + {18'd0, sh}; loh <= (oh == ohm2);
                            if (last_oh) body <= 1'b0;
                        end
                    end
                end
            end
        end
    end
endmodule
