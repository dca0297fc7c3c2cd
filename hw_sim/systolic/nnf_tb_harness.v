// nnf_tb_harness: the program testbench's Verilog half around nnf_systolic_top (testbench only:
// it is never part of the synthesizable library in backends/systolic/hdl, and generated projects
// carry it in tb/).  It keeps Python off the per-cycle path: tb_program.py writes the files below,
// raises `go` and awaits `finished`; between the two the whole batch runs in the simulator.
//
// The clock is generated here (#HALF_PERIOD; Verilator builds it with --timing): cocotb drives no
// clock and schedules nothing per cycle.  After 3 reset cycles the harness waits for `go`, reads
// nnf_tb_plan.hex, then for every sample:
//   * AXI4-Stream source: the sample's words from nnf_tb_in.hex, word 0 presented with tvalid high
//     before start; tdata/tvalid hold until a cycle where tvalid & tready (the DUT's) are both
//     high, then the next word (tvalid falls after the last).  Words the program did not take are
//     skipped before the next sample.
//   * start: a one-cycle pulse; the sample ends at done's rising edge.
//   * AXI4-Stream sink, m_axis_tready held high: every handshaken word to nnf_tb_out.hex.
//   * at each layer_done: `s <layer_id> <cycle_count>` to nnf_tb_stamps.hex (cycle_count as it is
//     in the layer_done cycle: the same value a cocotb ReadOnly read after RisingEdge(layer_done)
//     sees).  With trace on, the controller is stalled there (trace_en); the harness reads every
//     region of the plan listed for that layer id through the debug port (address one cycle, the
//     RAM's registered read the next, captured the cycle after: one word a cycle) into
//     nnf_tb_trace.hex, then pulses resume.  Stalled cycles do not count in cycle_count.
//   * at done: `e <cycle_count> <output words so far> <trace words so far>` to nnf_tb_stamps.hex.
//   * a sample whose cycle_count passes max_cycles stops the batch with status 1.
// Then it closes the files and raises `finished` (status 0: every sample ran; 1: `sample` ran past
// max_cycles; 2: a file did not open or nnf_tb_plan.hex is short; 3: more regions than
// MAX_REGIONS; 4: nnf_tb_in.hex is short).
//
// nnf_tb_plan.hex (hex numbers, white space between): n_samples n_words trace max_cycles n_regions,
// then n_regions triples layer_id base count.  nnf_tb_in.hex: n_samples * n_words words, one a
// line, COLS lanes of IN_W bits (lane l at bits [l*IN_W +: IN_W]).  Output files: one word a line
// in the same packing, as %h writes it (Icarus writes x for a scratchpad word never written).
//
// The DUT is nnf_systolic_top with the harness's parameters, or, with `define NNF_TB_DUT <name>,
// a generated wrapper of the same ports whose parameters are fixed (the harness's parameters
// must then be the same values: they size its words).  Verilog-2005 (Icarus and Verilator).
`default_nettype none
module nnf_tb_harness #(
    parameter integer ROWS = 8,
    parameter integer COLS = 8,
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32,
    parameter integer IDX_W = 4,
    parameter integer SPAD_DEPTH = 4096,
    parameter integer WMEM_DEPTH = 8192,
    parameter integer IMEM_DEPTH = 4096,
    parameter integer PMEM_DEPTH = 2048,
    parameter integer PROG_DEPTH = 256,
    parameter integer MAX_REGIONS = 1024,
    parameter integer HALF_PERIOD = 5
) (
    input  wire        go,        // the files are written: run the batch
    output reg         finished,  // the batch ended (status says how)
    output reg  [7:0]  status,
    output reg  [31:0] sample     // the sample running (the failing one when status is 1)
);
    localparam integer WORD_W = COLS * IN_W;
    localparam [3:0] H_RESET = 4'd0, H_IDLE = 4'd1, H_LOAD = 4'd2, H_RUN = 4'd3, H_SCAN = 4'd4,
                     H_READ = 4'd5, H_RESUME = 4'd6, H_RESUMED = 4'd7, H_NEXT = 4'd8, H_END = 4'd9;

    reg clk = 1'b0;
    always #(HALF_PERIOD) clk = ~clk;

    // -- the DUT ------------------------------------------------------------------------------------
    reg               rst = 1'b1, start = 1'b0, trace_en = 1'b0, resume = 1'b0;
    reg  [WORD_W-1:0] s_tdata = {WORD_W{1'b0}};
    reg               s_tvalid = 1'b0;
    reg  [31:0]       dbg_addr = 32'd0;
    wire              s_tready, m_tvalid, m_tlast, busy, done, layer_done;
    wire [WORD_W-1:0] m_tdata, dbg_data;
    wire [31:0]       cycle_count;
    wire [15:0]       layer_id;
`ifdef NNF_TB_DUT
    `NNF_TB_DUT dut (
`else
    nnf_systolic_top #(.ROWS(ROWS), .COLS(COLS), .IN_W(IN_W), .ACC_W(ACC_W), .IDX_W(IDX_W),
                       .SPAD_DEPTH(SPAD_DEPTH), .WMEM_DEPTH(WMEM_DEPTH), .IMEM_DEPTH(IMEM_DEPTH),
                       .PMEM_DEPTH(PMEM_DEPTH), .PROG_DEPTH(PROG_DEPTH)) dut (
`endif
        .clk(clk), .rst(rst), .start(start), .busy(busy), .done(done), .cycle_count(cycle_count),
        .layer_done(layer_done), .layer_id(layer_id), .trace_en(trace_en), .resume(resume),
        .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready), .s_axis_tlast(1'b0),
        .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(1'b1), .m_axis_tlast(m_tlast),
        .dbg_addr(dbg_addr), .dbg_data(dbg_data));

    // -- the plan -----------------------------------------------------------------------------------
    reg [15:0] r_layer [0:MAX_REGIONS-1];
    reg [31:0] r_base [0:MAX_REGIONS-1];
    reg [31:0] r_count [0:MAX_REGIONS-1];
    reg [31:0] n_samples, n_words, trace_flag, max_cycles, n_regions;

    // -- the sequencer ------------------------------------------------------------------------------
    integer f_plan = 0, f_in = 0, f_out = 0, f_trace = 0, f_stamp = 0, got, k;
    reg [3:0]        state = H_RESET;
    reg [2:0]        rst_left = 3'd3;
    reg              done_q = 1'b0;
    reg              active = 1'b0;      // a sample runs: its streams are live
    reg [31:0]       pos, n_out, n_trace, ri, addr, left;
    reg [15:0]       cur_layer;
    reg              v0 = 1'b0, v1 = 1'b0;  // debug reads in flight: address issued, data on the RAM's output
    reg [WORD_W-1:0] w;
    reg [31:0]       t0, t1, t2;
    reg [7:0]        bad;

    initial begin
        finished = 1'b0;
        status = 8'd0;
        sample = 32'd0;
    end

    // the next input word into w (status 4 when the file ends early)
    task read_word;
        begin
            got = $fscanf(f_in, "%h", w);
            if (got != 1) bad = 8'd4;
        end
    endtask

    always @(posedge clk) begin
        bad = 8'd0;
        done_q <= done;
        v0 <= 1'b0;
        v1 <= v0;
        if (v1) begin  // the word addressed two edges ago is on dbg_data
            $fwrite(f_trace, "%h\n", dbg_data);
            n_trace = n_trace + 1;
        end
        if (active) begin
            if (s_tvalid && s_tready) begin  // a handshake at this edge: the next word, or none
                pos = pos + 1;
                if (pos < n_words) begin
                    read_word;
                    s_tdata <= w;
                end else begin
                    s_tvalid <= 1'b0;
                end
            end
            if (m_tvalid) begin  // tready is held high: every valid word is a handshake
                $fwrite(f_out, "%h\n", m_tdata);
                n_out = n_out + 1;
            end
        end
        case (state)
            H_RESET: begin
                rst_left <= rst_left - 3'd1;
                if (rst_left == 3'd0) begin
                    rst <= 1'b0;
                    state <= H_IDLE;
                end
            end
            H_IDLE: if (go) begin
                f_plan = $fopen("nnf_tb_plan.hex", "r");
                f_in = $fopen("nnf_tb_in.hex", "r");
                f_out = $fopen("nnf_tb_out.hex", "w");
                f_trace = $fopen("nnf_tb_trace.hex", "w");
                f_stamp = $fopen("nnf_tb_stamps.hex", "w");
                n_out = 0;
                n_trace = 0;
                if (f_plan == 0 || f_in == 0 || f_out == 0 || f_trace == 0 || f_stamp == 0) begin
                    bad = 8'd2;
                end else begin
                    got = $fscanf(f_plan, "%h %h %h %h %h", n_samples, n_words, trace_flag, max_cycles, n_regions);
                    if (got != 5) bad = 8'd2;
                    else if (n_regions > MAX_REGIONS) bad = 8'd3;
                    for (k = 0; k < n_regions && bad == 8'd0; k = k + 1) begin
                        got = $fscanf(f_plan, "%h %h %h", t0, t1, t2);
                        if (got != 3) bad = 8'd2;
                        r_layer[k] = t0[15:0];
                        r_base[k] = t1;
                        r_count[k] = t2;
                    end
                end
                trace_en <= trace_flag[0];
                sample <= 32'd0;
                state <= (n_samples == 0) ? H_END : H_LOAD;
            end
            H_LOAD: begin  // word 0 valid before start, so INPUT never waits on the source
                pos = 0;
                if (n_words != 0) begin
                    read_word;
                    s_tdata <= w;
                    s_tvalid <= 1'b1;
                end
                start <= 1'b1;
                active <= 1'b1;
                state <= H_RUN;
            end
            H_RUN: begin
                start <= 1'b0;
                if (layer_done) begin
                    $fwrite(f_stamp, "s %h %h\n", layer_id, cycle_count);
                    if (trace_en) begin
                        cur_layer <= layer_id;
                        ri <= 32'd0;
                        state <= H_SCAN;
                    end
                end else if (done && !done_q && !start) begin
                    $fwrite(f_stamp, "e %h %h %h\n", cycle_count, n_out, n_trace);
                    active <= 1'b0;
                    s_tvalid <= 1'b0;
                    state <= H_NEXT;
                end else if (cycle_count > max_cycles) begin
                    bad = 8'd1;
                end
            end
            H_SCAN: begin  // the plan's regions of this layer, in plan order
                if (ri >= n_regions) begin
                    state <= H_RESUME;
                end else begin
                    ri <= ri + 32'd1;
                    if (r_layer[ri] == cur_layer && r_count[ri] != 32'd0) begin
                        addr <= r_base[ri];
                        left <= r_count[ri];
                        state <= H_READ;
                    end
                end
            end
            H_READ: begin
                dbg_addr <= addr;
                v0 <= 1'b1;
                addr <= addr + 32'd1;
                left <= left - 32'd1;
                if (left == 32'd1) state <= H_SCAN;
            end
            H_RESUME: if (!v0 && !v1) begin  // every read captured
                resume <= 1'b1;
                state <= H_RESUMED;
            end
            H_RESUMED: begin
                resume <= 1'b0;
                state <= H_RUN;
            end
            H_NEXT: begin
                // the words not taken (word pos, on s_axis, was read already)
                for (k = pos + 1; k < n_words && bad == 8'd0; k = k + 1) read_word;
                if (sample + 32'd1 >= n_samples) begin
                    state <= H_END;
                end else begin
                    sample <= sample + 32'd1;
                    state <= H_LOAD;
                end
            end
            H_END: if (!finished) begin
                if (f_plan != 0) $fclose(f_plan);
                if (f_in != 0) $fclose(f_in);
                if (f_out != 0) $fclose(f_out);
                if (f_trace != 0) $fclose(f_trace);
                if (f_stamp != 0) $fclose(f_stamp);
                finished <= 1'b1;
            end
            default: state <= H_END;
        endcase
        if (bad != 8'd0 && state != H_END) begin  // stop the batch; the last assignment wins
            status <= bad;
            active <= 1'b0;
            state <= H_END;
        end
    end

    wire unused_ok = &{1'b0, busy, m_tlast};
endmodule
`default_nettype wire
