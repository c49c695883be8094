%% A Gy (RFC 4006) load generator on Erlang/OTP's diameter application: the
%% independent client the speed target is measured with.  One connection;
%% SESSIONS Erlang processes each play whole sessions back to back for
%% SECONDS, as bench/diameter.py's _session does: CCR-I asking 60 s, two
%% CCR-U reporting 30 s used (asking 60 s), CCR-T reporting 10 s; every CCR
%% carries Subscription-Id 4915110000001, Called-Party-Address 4930123456 and
%% one MSCC of Rating-Group 1.  A session under way at the deadline is played
%% to its end (no hold is left behind).
%%
%%   erl -noshell -pa EBIN -run ocs_gy_load main PORT SESSIONS SECONDS HOST OUTFILE
%%
%% HOST is the Origin-Host (one per run: see bench/diameter.py _connect).
%% OUTFILE gets every CCR's latency in microseconds, one per line.  Output:
%%   result ccrs=N sessions=N errors=N elapsed_us=N
%% (sessions: those whose CCR-T was answered 2001; errors: CCRs answered
%% otherwise, or not at all within 10 s), or "error reason=..." and exit 1.

-module(ocs_gy_load).

-export([main/1]).

%% diameter_app callbacks
-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-include_lib("diameter/include/diameter.hrl").

-define(SVC, ocs_gy_load).
-define(TIMEOUT, 10000).
-define(SUBSCRIBER, <<"4915110000001">>).
-define(CALLED, <<"4930123456">>).

main([PortS, SessionsS, SecondsS, Host, Out]) ->
    try run(list_to_integer(PortS), list_to_integer(SessionsS), list_to_integer(SecondsS), Host, Out) of
        ok -> halt(0)
    catch
        C:E:St ->
            io:format("error reason=~0p~n", [{C, E, St}]),
            halt(1)
    end.

run(Port, N, Seconds, Host, Out) ->
    ok = diameter:start(),
    ok = diameter:start_service(?SVC, service(list_to_binary(Host))),
    true = diameter:subscribe(?SVC),
    {ok, Ref} = diameter:add_transport(?SVC, {connect, transport(Port)}),
    wait_event(fun({up, R, _Peer, _Config, _Pkt}) when R == Ref -> ok end),
    Main = self(),
    T0 = now_us(),
    Stop = T0 + Seconds * 1000000,
    Pids = [spawn_link(fun() -> Main ! {done, self(), worker(Host, Stop, {0, [], 0})} end)
            || _ <- lists:seq(1, N)],
    {Sessions, Lat, Errors} = collect(Pids, {0, [], 0}),
    Elapsed = now_us() - T0,
    ok = file:write_file(Out, [[integer_to_list(L), $\n] || L <- Lat]),
    io:format("result ccrs=~b sessions=~b errors=~b elapsed_us=~b~n", [length(Lat), Sessions, Errors, Elapsed]),
    ok = diameter:remove_transport(?SVC, Ref),  % DPR/DPA, then the connection closes
    catch wait_event(fun({down, R, _Peer, _Config}) when R == Ref -> ok end),
    ok.

collect([], Acc) ->
    Acc;
collect(Pids, {S, L, E}) ->
    receive
        {done, Pid, {S1, L1, E1}} -> collect(lists:delete(Pid, Pids), {S + S1, L1 ++ L, E + E1})
    after 60000 + ?TIMEOUT * 4 ->
        error({workers_hung, length(Pids)})
    end.

worker(Host, Stop, {S, L, E} = Acc) ->
    case now_us() < Stop of
        false ->
            Acc;
        true ->
            Sid = list_to_binary(diameter:session_id(Host)),
            {Ok, L1, E1} = session(Sid, L, E),
            worker(Host, Stop, {S + Ok, L1, E1})
    end.

%% I (60 asked), U (30 used, 60 asked), U (30 used, 60 asked), T (10 used).
session(Sid, L0, E0) ->
    Steps = [{1, 0, none, 60}, {2, 1, 30, 60}, {2, 2, 30, 60}, {3, 3, 10, none}],
    lists:foldl(fun({Type, Num, Used, Asked}, {_, L, E}) ->
                        A = now_us(),
                        Res = diameter:call(?SVC, gy, ccr(Sid, Type, Num, Used, Asked), [{timeout, ?TIMEOUT}]),
                        Lat = now_us() - A,
                        Ok = Res == {ok, 2001},
                        {case Ok of true -> 1; false -> 0 end, [Lat | L], E + case Ok of true -> 0; false -> 1 end}
                end, {0, L0, E0}, Steps).

units(none) -> [];
units(Seconds) -> [[{'CC-Time', Seconds}]].

ccr(Sid, Type, Num, Used, Asked) ->
    ['CCR', {'Session-Id', Sid},
            {'Auth-Application-Id', 4},
            {'Service-Context-Id', <<"32260@3gpp.org">>},
            {'CC-Request-Type', Type},
            {'CC-Request-Number', Num},
            {'Subscription-Id', [[{'Subscription-Id-Type', 0}, {'Subscription-Id-Data', ?SUBSCRIBER}]]},
            {'Service-Information', [[{'IMS-Information', [[{'Node-Functionality', 6},
                                                             {'Role-Of-Node', 0},
                                                             {'Called-Party-Address', ?CALLED}]]}]]},
            {'Multiple-Services-Credit-Control', [[{'Rating-Group', 1},
                                                   {'Requested-Service-Unit', units(Asked)},
                                                   {'Used-Service-Unit', units(Used)}]]}].

now_us() -> erlang:monotonic_time(microsecond).

service(Host) ->
    [{'Origin-Host', Host},
     {'Origin-Realm', <<"erlang.test">>},
     {'Vendor-Id', 0},
     {'Product-Name', <<"ocs-bench-otp-load">>},
     {'Auth-Application-Id', [4]},
     {'Supported-Vendor-Id', [10415]},
     {decode_format, map},
     {string_decode, false},
     {traffic_counters, false},
     {application, [{alias, gy},
                    {dictionary, ocs_gy},
                    {module, ?MODULE},
                    {answer_errors, callback}]}].

transport(Port) ->
    [{transport_module, diameter_tcp},
     {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port}, {ip, {127, 0, 0, 1}}]},
     {connect_timer, 30000},
     {dpa_timeout, 5000}].

wait_event(F) ->
    receive
        #diameter_event{service = ?SVC, info = Info} ->
            try F(Info)
            catch error:function_clause -> wait_event(F)
            end
    after ?TIMEOUT ->
        error(timeout_waiting_for_event)
    end.

%% --- diameter_app callbacks ---------------------------------------------------------------

peer_up(_Svc, _Peer, State) -> State.

peer_down(_Svc, _Peer, State) -> State.

pick_peer([Peer | _], _Remote, _Svc, _State) -> {ok, Peer};
pick_peer([], _Remote, _Svc, _State) -> false.

prepare_request(#diameter_packet{msg = ['CCR' | Avps]}, _Svc, {_Ref, Caps}) ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, DR}} = Caps,
    {send, ['CCR', {'Origin-Host', OH}, {'Origin-Realm', OR}, {'Destination-Realm', DR} | Avps]}.

prepare_retransmit(Pkt, Svc, Peer) -> prepare_request(Pkt, Svc, Peer).

handle_answer(#diameter_packet{msg = ['CCA' | Avps]}, _Request, _Svc, _Peer) when is_map(Avps) ->
    {ok, maps:get('Result-Code', Avps, none)};
handle_answer(#diameter_packet{msg = Msg}, _Request, _Svc, _Peer) ->
    {error, Msg}.

handle_error(Reason, _Request, _Svc, _Peer) -> {error, Reason}.

handle_request(_Pkt, _Svc, _Peer) -> discard.  % RAR/ASR: not part of this load
