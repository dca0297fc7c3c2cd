// nnf_eltwise_seq: the ELTWISE address generator.
//
//   for pixel p < out_h*out_w:  for word c < n_words:  for phase ph < phases(sub):
//     ADD, MUL:        ph 0 reads a = SPAD[in_base + p*in_ps + c], ph 1 reads b = SPAD[b_base + p*b_ps + c]
//     REQUANT, CLIP:   ph 0 reads a
//     LUT:             ph 0 reads a; ph 0..COLS-1 look lane ph up (the address stays on a)
//
// raddr is a register valid in the issue cycle (the scratchpad returns the word one cycle
// later); tag is {b phase, lane ph}.  Latency: the first read issues the cycle after go;
// `body` is high in every issue cycle.
module nnf_eltwise_seq #(
    parameter integer COLS = 4
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        go,
    input  wire [3:0]  sub,
    input  wire [15:0] out_h,
    input  wire [15:0] out_w,
    input  wire [15:0] n_words,
    input  wire [31:0] in_base,
    input  wire [15:0] in_ps,
    input  wire [31:0] b_base,
    input  wire [15:0] b_ps,
    output reg         body,
    output reg  [31:0] raddr,
    output wire        tag_b,
    output wire [7:0]  tag_lane
);
    localparam [7:0] COLS8 = COLS[7:0];
    reg [15:0] oh, ow, c;
    reg [7:0]  ph;
    reg [31:0] a_pix, b_pix;

    wire two = (sub == 4'd0) | (sub == 4'd1);                       // ADD, MUL
    wire [7:0] ph_last = two ? 8'd1 : ((sub == 4'd4) ? COLS8 - 8'd1 : 8'd0);   // LUT: COLS lanes
    wire empty = (n_words == 16'd0) | (out_h == 16'd0) | (out_w == 16'd0);
    wire last_c = ({1'b0, c} + 17'd1 == {1'b0, n_words});
    wire wrap_ow = ({1'b0, ow} + 17'd1 == {1'b0, out_w});
    wire last_oh = ({1'b0, oh} + 17'd1 == {1'b0, out_h});
    wire [31:0] c32 = {16'd0, c};
    wire [31:0] a_next_pix = a_pix + {16'd0, in_ps};

    assign tag_b = two & (ph == 8'd1);
    assign tag_lane = ph;

    always @(posedge clk) begin
        if (rst) begin
            body <= 1'b0;
        end else if (go) begin
            body <= ~empty;
            oh <= 16'd0; ow <= 16'd0; c <= 16'd0; ph <= 8'd0;
            a_pix <= in_base; b_pix <= b_base; raddr <= in_base;
        end else if (body) begin
            if (ph != ph_last) begin
                ph <= ph + 8'd1;
                if (two) raddr <= b_pix + c32;
            end else begin
                ph <= 8'd0;
                if (!last_c) begin
                    c <= c + 16'd1;
                    raddr <= a_pix + c32 + 32'd1;
                end else begin
                    c <= 16'd0;
                    a_pix <= a_next_pix; b_pix <= b_pix + {16'd0, b_ps};
                    raddr <= a_next_pix;
                    if (!wrap_ow) begin
                        ow <= ow + 16'd1;
                    end else begin
                        ow <= 16'd0; oh <= oh + 16'd1;
                        if (last_oh) body <= 1'b0;
                    end
                end
            end
        end
    end
endmodule
