%% A reference Gy server on Erlang/OTP's diameter application, for benchmarks:
%% answers every CCR at once with a fixed quota (2001, CC-Time 60 per MSCC
%% on CCR-I/U, Validity-Time 1800), keeping no state and touching no storage.
%% It measures what a mature Diameter stack costs per CCR on this machine,
%% next to ocsd (bench/diameter.py, reference()).
%%
%%   erl -noshell -pa OUT -run ocs_gy_ref_server main PORT
%%
%% prints "ready port=PORT" once the TCP listener accepts connections and
%% runs until the VM is stopped (SIGTERM, or its stdin closing).

-module(ocs_gy_ref_server).

-export([main/1]).

%% diameter_app callbacks
-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-include_lib("diameter/include/diameter.hrl").

-define(SVC, ocs_gy_ref_server).
-define(QUOTA, 60).
-define(VALIDITY, 1800).

main([PortS]) ->
    Port = list_to_integer(PortS),
    ok = diameter:start(),
    ok = diameter:start_service(?SVC, service()),
    true = diameter:subscribe(?SVC),
    {ok, _} = diameter:add_transport(?SVC, {listen, [{transport_module, diameter_tcp},
                                                     {transport_config, [{reuseaddr, true},
                                                                         {ip, {127, 0, 0, 1}},
                                                                         {port, Port}]}]}),
    wait_listening(Port, 100),
    io:format("ready port=~b~n", [Port]),
    %% stop when whoever started us goes away (stdin closed) or on SIGTERM (init:stop)
    spawn_link(fun() -> _ = io:get_line(""), init:stop() end),
    events().

%% Peer connections coming and going, for the log (closed carries the reason).
events() ->
    receive
        #diameter_event{info = Info} when is_tuple(Info) ->
            io:format("event ~0p~n", [event(Info)]);
        _ ->
            ok
    end,
    events().

event({up, _Ref, {_, Caps}, _Config, _Pkt}) -> {up, Caps#diameter_caps.origin_host};
event({closed, _Ref, Reason, _Config}) -> {closed, Reason};
event({watchdog, _Ref, _PeerRef, Transition, _Config}) -> {watchdog, Transition};
event(Info) -> element(1, Info).

wait_listening(_Port, 0) ->
    error(not_listening);
wait_listening(Port, N) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 100) of
        {ok, S} ->
            gen_tcp:close(S);
        {error, _} ->
            timer:sleep(50),
            wait_listening(Port, N - 1)
    end.

service() ->
    [{'Origin-Host', <<"ref.erlang.test">>},
     {'Origin-Realm', <<"erlang.test">>},
     {'Vendor-Id', 0},
     {'Product-Name', <<"ocs-bench-otp-reference">>},
     {'Auth-Application-Id', [4]},
     {'Supported-Vendor-Id', [10415]},
     {decode_format, map},
     {string_decode, false},
     {traffic_counters, false},
     %% the load generator opens one connection per run with the same Origin-Host,
     %% sometimes before the last one is reaped: no election (RFC 6733 5.6.4) here
     {restrict_connections, false},
     {application, [{alias, gy},
                    {dictionary, ocs_gy},
                    {module, ?MODULE}]}].

%% --- diameter_app callbacks ---------------------------------------------------------------

peer_up(_Svc, _Peer, State) -> State.

peer_down(_Svc, _Peer, State) -> State.

pick_peer(_Local, _Remote, _Svc, _State) -> false.

prepare_request(Pkt, _Svc, _Peer) -> {send, Pkt}.

prepare_retransmit(Pkt, _Svc, _Peer) -> {send, Pkt}.

handle_answer(Pkt, _Request, _Svc, _Peer) -> Pkt.

handle_error(Reason, _Request, _Svc, _Peer) -> {error, Reason}.

handle_request(#diameter_packet{msg = ['CCR' | Req]}, _Svc, {_Ref, Caps}) ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, _}} = Caps,
    RType = maps:get('CC-Request-Type', Req),
    Grant = RType == 1 orelse RType == 2,
    Mscc = [mscc(M, Grant) || M <- maps:get('Multiple-Services-Credit-Control', Req, [])],
    {reply, ['CCA' | #{'Session-Id' => maps:get('Session-Id', Req),
                       'Result-Code' => 2001,
                       'Origin-Host' => OH,
                       'Origin-Realm' => OR,
                       'Auth-Application-Id' => 4,
                       'CC-Request-Type' => RType,
                       'CC-Request-Number' => maps:get('CC-Request-Number', Req),
                       'Multiple-Services-Credit-Control' => Mscc}]};
handle_request(_Pkt, _Svc, _Peer) ->
    {answer_message, 3001}.  % DIAMETER_COMMAND_UNSUPPORTED

mscc(M, true) ->
    (mscc(M, false))#{'Granted-Service-Unit' => [#{'CC-Time' => ?QUOTA}],
                      'Validity-Time' => [?VALIDITY]};
mscc(M, false) ->
    #{'Rating-Group' => maps:get('Rating-Group', M, []), 'Result-Code' => [2001]}.
