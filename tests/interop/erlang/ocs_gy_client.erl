%% A Gy (RFC 4006) client on Erlang/OTP's diameter application, for interop
%% tests of ocsd: CER, CCRs given on the command line, then DPR.  It also
%% answers the server's RAR and ASR (RFC 6733 sections 8.3 and 8.5) and acts
%% on them as RFC 4006 says: a CCR-U after a RAR (section 5.5), a CCR-T after
%% an ASR (section 5.6).
%%
%%   erl -noshell -pa OUT -run ocs_gy_client main PORT [STEP ...]
%%
%% A STEP is "TYPE,key=value,..." with TYPE one of I, U, T, E (send that CCR),
%% W (wait for a server request) or P (pause, key ms: stay connected that
%% long, e.g. while the server waits for an answer it will not get).
%% Keys of I, U, T, E:
%%   sid     session label (one Session-Id per label, default "s1")
%%   sub     Subscription-Id-Data, END_USER_E164 (default 4915110000001)
%%   called  Called-Party-Address in Service-Information/IMS-Information
%%   rg      Rating-Group of the one MSCC (default 1)
%%   rsu     Requested-Service-Unit CC-Time
%%   usu     Used-Service-Unit CC-Time
%%   cause   Termination-Cause (CCR-T)
%% CC-Request-Number counts per session from 0.  Without steps the session is
%% I (rsu=60, called=4930123456), U (usu=61, rsu=60), T (usu=5).
%%
%% W waits for the server's RAR or ASR for one of the sessions above.  Keys:
%%   req     rar or asr: the request expected (default: either)
%%   answer  the Result-Code of the RAA/ASA (default 2001), or "none": no
%%           answer at all (handle_request returns discard), for the
%%           server's retry.  A 3xxx code is answered as a protocol
%%           error (E bit, OTP's answer-message).  Only after 2001 or 2002
%%           does the CCR below follow; after another code (5002: "no such
%%           session here", 5012, ...) or none the session stays as it was
%%   count   how many such requests to wait for (default 1; 2 with
%%           answer=none sees the server's one retransmission)
%%   usu     CC-Time reported in the CCR that follows (default 10)
%%   rsu     CC-Time requested in the CCR-U after a RAR (default 60)
%%   rg      Rating-Group of that CCR (default 1)
%%   cause   Termination-Cause of the CCR-T after an ASR (default 4,
%%           DIAMETER_ADMINISTRATIVE)
%%   timeout ms to wait for each request (default 30000)
%% The answer mode of the first W step holds from the start (a request may
%% come before the client reaches that step); each W step sets its own.
%% Requests that come while no W step waits are answered and queued for the
%% next W step.
%%
%% Examples (what the tests run; the server acts between the lines):
%%   ... main 3868 I,rg=1,rsu=60,called=4930123456 W,req=asr,usu=20
%%       CCR-I; wait for an ASR, ASA 2001, CCR-T reporting 20 s (cause 4)
%%   ... main 3868 I,rg=1,rsu=300,called=4930123456 W,req=rar,usu=10,rsu=300 T,usu=5
%%       CCR-I; wait for a RAR, RAA 2001, CCR-U (10 s used, 300 asked); CCR-T
%%   ... main 3868 I,rg=1,rsu=60,called=4930123456 W,req=asr,answer=none,count=2 P,ms=8000 T,usu=5
%%       never answer: see the ASR and its retransmission (T bit), stay
%%       connected 8 s while the server gives up, then end the session
%%   ... main 3868 I,rg=1,rsu=60,called=4930123456 W,req=asr,answer=5002 T,usu=5
%%       answer ASA 5002 (no CCR-T follows it), then end the session
%%
%% Output, one line per event, space-separated key=value:
%%   cea result=R origin_host=H             capabilities exchange done
%%   cca type=N number=N result=R mscc_result=R granted_time=N
%%       validity=N fui=true|false fua=N errors=N session=S
%%   rar session=S retransmitted=true|false errors=N answer=R|none ms=N
%%   asr session=S retransmitted=true|false errors=N answer=R|none ms=N
%%                                          a server request came, ms after
%%                                          the client started (errors:
%%                                          decode errors of it against the
%%                                          RFC 6733 grammar); after one
%%                                          answered 2001/2002, the cca line
%%                                          of the CCR-U or CCR-T it caused
%%   down                                   the transport is gone (OTP sends
%%                                          DPR on remove_transport, waits for DPA)
%%   done                                   everything finished (exit 0)
%% "none" stands for an absent AVP; errors counts decode errors of the answer.
%% On any failure: "error reason=..." and exit status 1.

-module(ocs_gy_client).

-export([main/1]).

%% diameter_app callbacks
-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-include_lib("diameter/include/diameter.hrl").

-define(SVC, ocs_gy_client).
-define(ORIGIN_HOST, <<"pgw.erlang.test">>).
-define(ORIGIN_REALM, <<"erlang.test">>).
-define(TIMEOUT, 10000).
-define(MODE, {?MODULE, answer}).   % persistent_term: how server requests are answered
-define(MAIN, {?MODULE, main}).     % persistent_term: the process running the steps
-define(START, {?MODULE, start}).   % persistent_term: monotonic ms at start

main([PortS | Steps]) ->
    try run(list_to_integer(PortS), parse_steps(Steps)) of
        ok ->
            out("done", []),
            halt(0)
    catch
        C:E:St ->
            out("error", [{reason, io_lib:format("~p", [{C, E, St}])}]),
            halt(1)
    end.

default_steps() ->
    parse_steps(["I,rsu=60,called=4930123456", "U,usu=61,rsu=60", "T,usu=5"]).

parse_steps([]) ->
    default_steps();
parse_steps(Steps) ->
    [parse_step(S) || S <- Steps].

parse_step(S) ->
    [Type | KVs] = string:split(S, ",", all),
    maps:from_list([{type, Type} | [kv(string:split(KV, "=")) || KV <- KVs]]).

kv([K, V]) -> {list_to_atom(K), V}.

run(Port, Steps) ->
    persistent_term:put(?MAIN, self()),
    persistent_term:put(?START, erlang:monotonic_time(millisecond)),
    persistent_term:put(?MODE, case [S || #{type := "W"} = S <- Steps] of
                                   [W | _] -> answer_mode(W);
                                   [] -> 2001
                               end),
    ok = diameter:start(),
    ok = diameter:start_service(?SVC, service()),
    true = diameter:subscribe(?SVC),
    {ok, Ref} = diameter:add_transport(?SVC, {connect, transport(Port)}),
    Cea = wait_event(fun({up, R, _Peer, _Config, #diameter_packet{msg = Msg}}) when R == Ref -> Msg end),
    out("cea", [{result, field('Result-Code', Cea)}, {origin_host, field('Origin-Host', Cea)}]),
    lists:foldl(fun step/2, #{}, Steps),
    ok = diameter:remove_transport(?SVC, Ref),
    wait_event(fun({down, R, _Peer, _Config}) when R == Ref -> ok end),
    out("down", []),
    ok = diameter:stop_service(?SVC),
    ok.

service() ->
    [{'Origin-Host', ?ORIGIN_HOST},
     {'Origin-Realm', ?ORIGIN_REALM},
     {'Vendor-Id', 0},
     {'Product-Name', <<"ocs-interop-otp-diameter">>},
     {'Auth-Application-Id', [4]},
     {'Supported-Vendor-Id', [10415]},
     {decode_format, map},
     {string_decode, false},
     {application, [{alias, gy},
                    {dictionary, ocs_gy},
                    {module, ?MODULE},
                    {answer_errors, callback}]}].

transport(Port) ->
    [{transport_module, diameter_tcp},
     {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port}, {ip, {127, 0, 0, 1}}]},
     {connect_timer, 30000},
     {dpa_timeout, 5000}].

%% Wait for the first service event F accepts, printing DPR-related ones too.
wait_event(F) ->
    receive
        #diameter_event{service = ?SVC, info = Info} ->
            try F(Info)
            catch error:function_clause -> wait_event(F)
            end
    after ?TIMEOUT ->
        error(timeout_waiting_for_event)
    end.

step(#{type := "P"} = Step, Sessions) ->
    timer:sleep(int(Step, ms)),
    Sessions;
step(#{type := "W"} = Step, Sessions) ->
    persistent_term:put(?MODE, answer_mode(Step)),
    Want = case maps:get(req, Step, "any") of
               "rar" -> 'RAR';
               "asr" -> 'ASR';
               "any" -> any
           end,
    Timeout = list_to_integer(maps:get(timeout, Step, "30000")),
    lists:foldl(fun(_, Acc) -> server_request(Want, Timeout, Step, Acc) end, Sessions,
                lists:seq(1, list_to_integer(maps:get(count, Step, "1"))));
step(#{type := Type} = Step, Sessions) ->
    Label = maps:get(sid, Step, "s1"),
    {Sid, N} = case Sessions of
                   #{Label := {S0, N0}} -> {S0, N0};
                   _ -> {list_to_binary(diameter:session_id(binary_to_list(?ORIGIN_HOST))), 0}
               end,
    Ccr = ccr(request_type(Type), Sid, N, Step),
    case diameter:call(?SVC, gy, Ccr, [{timeout, ?TIMEOUT}]) of
        {answer, Msg, Errors} ->
            print_answer(Msg, Errors, Sid);
        Other ->
            error({no_answer, Type, N, Other})
    end,
    Sessions#{Label => {Sid, N + 1}}.

answer_mode(Step) ->
    case maps:get(answer, Step, "2001") of
        "none" -> none;
        Code -> list_to_integer(Code)
    end.

%% One RAR/ASR as handle_request reported it, then the CCR it calls for.
server_request(Want, Timeout, Step, Sessions) ->
    receive
        {server_request, Name, Sid, Retransmitted, Errors, Answer, Ms} when Want == any; Want == Name ->
            out(string:lowercase(atom_to_list(Name)),
                [{session, Sid}, {retransmitted, Retransmitted}, {errors, Errors}, {answer, Answer},
                 {ms, Ms - persistent_term:get(?START)}]),
            follow_up(Name, Sid, Answer, Step, Sessions)
    after Timeout ->
        error({no_server_request, Want})
    end.

follow_up(Name, Sid, Answer, Step, Sessions) when Answer == 2001; Answer == 2002 ->
    Label = case [L || {L, {S, _}} <- maps:to_list(Sessions), S == Sid] of
                [L | _] -> L;
                [] -> error({unknown_session, Sid})
            end,
    Common = #{sid => Label, rg => maps:get(rg, Step, "1"), usu => maps:get(usu, Step, "10")},
    Ccr = case Name of
              'RAR' -> Common#{type => "U", rsu => maps:get(rsu, Step, "60")};  % RFC 4006 5.5
              'ASR' -> Common#{type => "T", cause => maps:get(cause, Step, "4")}  % RFC 4006 5.6
          end,
    step(Ccr, Sessions);
follow_up(_Name, _Sid, _Answer, _Step, Sessions) ->
    Sessions.  % not answered, or refused: the client acts as if it never came

request_type("I") -> 1;
request_type("U") -> 2;
request_type("T") -> 3;
request_type("E") -> 4.

int(Step, K) -> list_to_integer(maps:get(K, Step)).

ccr(RType, Sid, N, Step) ->
    Units = fun(K) -> case maps:is_key(K, Step) of
                          true -> [[{'CC-Time', int(Step, K)}]];
                          false -> []
                      end
            end,
    Mscc = [{'Rating-Group', int(Step#{rg => maps:get(rg, Step, "1")}, rg)},
            {'Requested-Service-Unit', Units(rsu)},
            {'Used-Service-Unit', Units(usu)}],
    Sub = case RType of
              R when R == 1; R == 4 ->
                  [{'Subscription-Id', [[{'Subscription-Id-Type', 0},  % END_USER_E164
                                         {'Subscription-Id-Data',
                                          list_to_binary(maps:get(sub, Step, "4915110000001"))}]]}];
              _ ->
                  []
          end,
    Called = case maps:find(called, Step) of
                 {ok, To} ->
                     %% an optional AVP's value is [] or [Value]; a grouped value is a list of pairs
                     [{'Service-Information',
                       [[{'IMS-Information', [[{'Node-Functionality', 6},  % AS
                                               {'Role-Of-Node', 0},        % ORIGINATING_ROLE
                                               {'Called-Party-Address', list_to_binary(To)}]]}]]}];
                 error ->
                     []
             end,
    Cause = case maps:find(cause, Step) of
                {ok, C} -> [{'Termination-Cause', list_to_integer(C)}];
                error -> []
            end,
    ['CCR', {'Session-Id', Sid},
            {'Auth-Application-Id', 4},
            {'Service-Context-Id', <<"32260@3gpp.org">>},
            {'CC-Request-Type', RType},
            {'CC-Request-Number', N},
            {'Multiple-Services-Credit-Control', [Mscc]}
            | Sub ++ Called ++ Cause].

print_answer(['CCA' | Avps], Errors, Sid) ->
    {MsccResult, Granted, Validity, Fui} =
        case maps:get('Multiple-Services-Credit-Control', Avps, []) of
            [M | _] ->
                G = case opt(maps:get('Granted-Service-Unit', M, [])) of
                        none -> none;
                        Gsu -> opt(maps:get('CC-Time', Gsu, []))
                    end,
                {opt(maps:get('Result-Code', M, [])), G, opt(maps:get('Validity-Time', M, [])),
                 opt(maps:get('Final-Unit-Indication', M, []))};
            [] ->
                {none, none, none, none}
        end,
    {HasFui, Fua} = case Fui of
                        #{'Final-Unit-Action' := A} -> {true, A};
                        none -> {false, none}
                    end,
    out("cca", [{type, maps:get('CC-Request-Type', Avps)},
                {number, maps:get('CC-Request-Number', Avps)},
                {result, maps:get('Result-Code', Avps)},
                {mscc_result, MsccResult}, {granted_time, Granted}, {validity, Validity},
                {fui, HasFui}, {fua, Fua}, {errors, length(Errors)}, {session, Sid}]);
print_answer([Name | Avps], Errors, Sid) ->
    out("cca", [{type, none}, {number, none}, {result, field('Result-Code', [Name | Avps])},
                {message, Name}, {errors, length(Errors)}, {session, Sid}]).

%% Optional AVPs of arity 1 decode to [] or [Value] in map form.
opt([]) -> none;
opt([V]) -> V;
opt(V) -> V.

field(K, [_Name | Avps]) when is_map(Avps) ->
    opt(maps:get(K, Avps, []));
field(K, [_Name | Avps]) when is_list(Avps) ->
    opt(proplists:get_value(K, Avps, []));
field(K, Rec) when is_tuple(Rec) ->
    %% record form: look the field up through the base dictionary
    Fields = diameter_gen_base_rfc6733:'#info-'(element(1, Rec), fields),
    opt(element(1 + index(K, Fields, 1), Rec)).

index(K, [K | _], I) -> I;
index(K, [_ | T], I) -> index(K, T, I + 1).

out(Tag, KVs) ->
    io:format("~s~s~n", [Tag, [io_lib:format(" ~s=~s", [K, fmt(V)]) || {K, V} <- KVs]]).

fmt(V) when is_binary(V) -> V;
fmt(V) when is_integer(V) -> integer_to_list(V);
fmt(V) when is_atom(V) -> atom_to_list(V);
fmt(V) -> lists:flatten(io_lib:format("~p", [V])).

%% --- diameter_app callbacks ---------------------------------------------------------------

peer_up(_Svc, _Peer, State) -> State.

peer_down(_Svc, _Peer, State) -> State.

pick_peer([Peer | _], _Remote, _Svc, _State) -> {ok, Peer};
pick_peer([], _Remote, _Svc, _State) -> false.

%% Origin-Host/Realm from our capabilities, Destination-Realm from the peer's CEA.
prepare_request(#diameter_packet{msg = ['CCR' | Avps]}, _Svc, {_Ref, Caps}) ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, DR}} = Caps,
    {send, ['CCR', {'Origin-Host', OH}, {'Origin-Realm', OR}, {'Destination-Realm', DR} | Avps]}.

prepare_retransmit(Pkt, Svc, Peer) -> prepare_request(Pkt, Svc, Peer).

handle_answer(#diameter_packet{msg = Msg, errors = Errors}, _Request, _Svc, _Peer) ->
    {answer, Msg, Errors}.

handle_error(Reason, _Request, _Svc, _Peer) -> {error, Reason}.

%% RAR/ASR from ocsd: answered (Result-Code of the W step, 2001 by default) or,
%% with answer=none, discarded; the steps' process hears of it either way.
handle_request(#diameter_packet{header = Hdr, msg = [Name | Avps], errors = Errors}, _Svc, {_Ref, Caps})
  when Name == 'RAR'; Name == 'ASR' ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, _}} = Caps,
    Sid = maps:get('Session-Id', Avps),
    Answer = persistent_term:get(?MODE, 2001),
    persistent_term:get(?MAIN) ! {server_request, Name, Sid, Hdr#diameter_header.is_retransmitted,
                                  length(Errors), Answer, erlang:monotonic_time(millisecond)},
    case Answer of
        none ->
            discard;
        Code when 3000 =< Code, Code < 4000 ->
            {protocol_error, Code};  % answer-message with the E bit (RFC 6733 section 7.1.3)
        Code ->
            Ans = case Name of 'RAR' -> 'RAA'; 'ASR' -> 'ASA' end,
            {reply, [Ans, {'Session-Id', Sid}, {'Result-Code', Code}, {'Origin-Host', OH},
                     {'Origin-Realm', OR}]}
    end;
handle_request(_Pkt, _Svc, _Peer) -> discard.
