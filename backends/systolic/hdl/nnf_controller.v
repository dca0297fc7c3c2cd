// nnf_controller: fetch, decode and sequence the program; the cycle counter; SYNC and END.
//
// Every instruction takes FETCH_CYCLES = 2 cycles (FETCH: the instruction is on prog_rdata and goes
// into the instruction register, ir_load; DECODE: the opcode is decoded from that register), then
// the unit's own cycles:
// `go_*` is high in the first EXEC cycle, and the unit raises `fin` in its last cycle (after its
// fixed drain), so the next FETCH follows immediately.  END stops (busy falls, done rises and
// holds until the next start).  SYNC pulses layer_done for one cycle with layer_id = its `count`
// field; with trace_en high the controller then stalls until `resume` (a cycle where it is high),
// with the cycle counter stopped, so a testbench can read the scratchpad through the debug port.
// Unknown opcodes stop like END.
//
// The program memory is read every cycle at prog_addr, which is pc's value in the next cycle (pc+1
// in DECODE, where pc advances; pc is 0 while idle), so the instruction at pc is on prog_rdata in
// every FETCH without a read issued in FETCH.  Nothing decodes the memory's output directly: a
// block RAM's clock-to-out and its route to the controller left no time for the decode (the
// critical path at 82.7 MHz).
//
// cycle_count: 0 in the first FETCH after start; +1 every cycle of FETCH, DECODE and EXEC (not
// while stalled).  So in the first cycle of instruction j it equals the sum of isa.cycles of
// instructions 0..j-1: when layer_done is high it is the sum up to and including that SYNC, and
// when done rises it is the program's total.
module nnf_controller #(
    parameter integer PROG_AW = 8
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               start,
    input  wire               trace_en,
    input  wire               resume,
    input  wire [3:0]         op,          // of the instruction register (loaded in FETCH)
    input  wire [15:0]        sync_id,     // its count field
    input  wire               unit_fin,
    output wire               prog_re,     // always high: the memory is read every cycle
    output wire [PROG_AW-1:0] prog_addr,
    output wire               ir_load,     // FETCH: the first instruction register takes prog_rdata
    output wire               ir_decode,   // DECODE: the second (the units') takes the first
    output reg                busy,
    output reg                done,
    output reg  [31:0]        cycle_count,
    output reg                layer_done,
    output reg  [15:0]        layer_id,
    output reg                go_gemm,
    output reg                go_win,
    output reg                go_elt,
    output reg                go_in,
    output reg                go_out,
    output wire               executing,   // an instruction's unit runs (the debug port is off)
    output wire               stalled
);
    localparam [2:0] S_IDLE = 3'd0, S_FETCH = 3'd1, S_DECODE = 3'd2, S_EXEC = 3'd3, S_STALL = 3'd4;
    localparam [3:0] OP_INPUT = 4'd1, OP_OUTPUT = 4'd2, OP_GEMM = 4'd3,
                     OP_WINDOW = 4'd4, OP_ELTWISE = 4'd5, OP_SYNC = 4'd6;

    reg [2:0]         state;
    reg [PROG_AW-1:0] pc;

    assign prog_re = 1'b1;
    assign prog_addr = (state == S_DECODE) ? pc + 1'b1 : pc;
    assign ir_load = (state == S_FETCH);
    assign ir_decode = (state == S_DECODE);
    assign executing = (state == S_EXEC);
    assign stalled = (state == S_STALL);

    always @(posedge clk) begin
        go_gemm <= 1'b0; go_win <= 1'b0; go_elt <= 1'b0; go_in <= 1'b0; go_out <= 1'b0;
        layer_done <= 1'b0;
        if (rst) begin
            state <= S_IDLE; pc <= {PROG_AW{1'b0}}; busy <= 1'b0; done <= 1'b0;
            cycle_count <= 32'd0; layer_id <= 16'd0;
        end else begin
            case (state)
                S_IDLE: if (start) begin
                    state <= S_FETCH; pc <= {PROG_AW{1'b0}}; busy <= 1'b1; done <= 1'b0;
                    cycle_count <= 32'd0;
                end
                S_FETCH: begin
                    state <= S_DECODE;
                    cycle_count <= cycle_count + 32'd1;
                end
                S_DECODE: begin
                    cycle_count <= cycle_count + 32'd1;
                    pc <= pc + 1'b1;
                    case (op)
                        OP_INPUT:   begin go_in <= 1'b1; state <= S_EXEC; end
                        OP_OUTPUT:  begin go_out <= 1'b1; state <= S_EXEC; end
                        OP_GEMM:    begin go_gemm <= 1'b1; state <= S_EXEC; end
                        OP_WINDOW:  begin go_win <= 1'b1; state <= S_EXEC; end
                        OP_ELTWISE: begin go_elt <= 1'b1; state <= S_EXEC; end
                        OP_SYNC: begin
                            layer_done <= 1'b1;
                            layer_id <= sync_id;
                            state <= trace_en ? S_STALL : S_FETCH;
                        end
                        default: begin  // END, or an unknown opcode
                            state <= S_IDLE; busy <= 1'b0; done <= 1'b1; pc <= {PROG_AW{1'b0}};
                        end
                    endcase
                end
                S_EXEC: begin
                    cycle_count <= cycle_count + 32'd1;
                    if (unit_fin) state <= S_FETCH;
                end
                S_STALL: if (resume) state <= S_FETCH;
                default: state <= S_IDLE;
            endcase
        end
    end
endmodule
