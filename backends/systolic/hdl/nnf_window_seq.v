// nnf_window_seq: the WINDOW address generator, one tap a cycle.
//
//   for output pixel (oh, ow):  for word c < n_words:  for ki < kh, kj < kw:  tap (ki, kj) of word c
//
// Requests go to nnf_tap_agen (which checks bounds and forms the address); the tag is
// {first tap of the word, last tap of the word}.  The pixel walk (ihp = oh*sh - pt,
// iwp = ow*sw - pl) and the kernel offsets (kdh = ki*dh, kdw = kj*dw) are running sums.
// Latency: the first tap issues the cycle after go; `body` is high in every issue cycle.
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
    wire last_kj = ({1'b0, kj} + 9'd1 == {1'b0, kw});
    wire last_ki = ({1'b0, ki} + 9'd1 == {1'b0, kh});
    wire last_c = ({1'b0, c} + 17'd1 == {1'b0, n_words});
    wire wrap_ow = ({1'b0, ow} + 17'd1 == {1'b0, out_w});
    wire last_oh = ({1'b0, oh} + 17'd1 == {1'b0, out_h});

    assign t_ihp = ihp;
    assign t_iwp = iwp;
    assign t_kdh = kdh;
    assign t_kdw = kdw;
    assign t_cw = c;
    assign t_tag = {(ki == 8'd0) & (kj == 8'd0), last_ki & last_kj};

    always @(posedge clk) begin
        if (rst) begin
            body <= 1'b0;
        end else if (go) begin
            body <= ~empty;
            oh <= 16'd0; ow <= 16'd0; c <= 16'd0; ki <= 8'd0; kj <= 8'd0;
            kdh <= 16'd0; kdw <= 16'd0; ihp <= neg_pt; iwp <= neg_pl;
        end else if (body) begin
            if (!last_kj) begin
                kj <= kj + 8'd1; kdw <= kdw + {8'd0, dw};
            end else begin
                kj <= 8'd0; kdw <= 16'd0;
                if (!last_ki) begin
                    ki <= ki + 8'd1; kdh <= kdh + {8'd0, dh};
                end else begin
                    ki <= 8'd0; kdh <= 16'd0;
                    if (!last_c) begin
                        c <= c + 16'd1;
                    end else begin
                        c <= 16'd0;
                        if (!wrap_ow) begin
                            ow <= ow + 16'd1; iwp <= iwp + {18'd0, sw};
                        end else begin
                            ow <= 16'd0; iwp <= neg_pl;
                            oh <= oh + 16'd1; ihp <= ihp + {18'd0, sh};
                            if (last_oh) body <= 1'b0;
                        end
                    end
                end
            end
        end
    end
endmodule
