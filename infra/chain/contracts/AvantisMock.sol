// SPDX-License-Identifier: MIT
// Vanta's own stand-in for the Avantis v1.5 contracts, for tests and the demo on a local anvil node.
// It emits the exact v1.5 event signatures and has the v1.5 function shapes (openTrade,
// closeTradeMarket, setDelegate, delegatedAction), an execution fee in wei (msg.value, 0 unless the
// keeper sets one), a keeper that executes pending market orders at a given price (an open whose
// fill is past its slippage bound is canceled and refunded, as on mainnet), and TP/SL/liquidation
// through LimitExecuted. One contract plays Trading, Callbacks, TradingStorage and PairInfos, so
// it emits each of their events (overloaded names included: TradingStorage's and PairInfos'
// FeesCharged, Trading's and Callbacks' SlUpdated and MarginUpdated); the close arithmetic is
// research/pnl.py's (fees 0.045 %, truncating division). To replay real closed trades exactly, the
// keeper can also execute a close with the outcome mainnet computed (percent profit, closing fee,
// rollover, loss protection, USDC sent), which the mock's own arithmetic does not model.
pragma solidity ^0.8.24;

contract MockUSDC {
    string public constant name = "USD Coin (Vanta mock)";
    string public constant symbol = "USDC";
    uint8 public constant decimals = 6;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= amount, "USDC: allowance");
        allowance[from][msg.sender] = allowed - amount;
        _move(from, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) internal {
        require(balanceOf[from] >= amount, "USDC: balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}

contract AvantisMock {
    struct Trade {
        address trader;
        uint256 pairIndex;
        uint256 index;
        uint256 initialPosToken;
        uint256 positionSizeUSDC;
        uint256 openPrice;
        bool buy;
        uint256 leverage;
        uint256 tp;
        uint256 sl;
        uint256 timestamp;
    }

    struct PendingOrder {
        address trader;
        uint256 pairIndex;
        bool open;
        Trade trade; // for opens: the requested trade; for closes: pairIndex/index in it
        uint256 amount; // collateral (open) or collateral to close
        bool live;
        uint256 slippageP; // opens: the allowed distance from t.openPrice, percent x1e10
    }

    // v1.5 events, exactly as Avantis emits them.
    event MarketExecuted(uint256 orderId, Trade t, bool open, uint256 price, uint256 positionSizeUSDC,
        int256 percentProfit, uint256 usdcSentToTrader, bool isPnl);
    event LimitExecuted(uint256 orderId, uint256 limitIndex, Trade t, uint8 orderType, uint256 price,
        uint256 positionSizeUSDC, int256 percentProfit, uint256 usdcSentToTrader, bool isPnl);
    event MarketOpenCanceled(uint256 orderId, address indexed trader, uint256 pairIndex);
    event MarketOrderInitiated(address indexed trader, uint256 pairIndex, bool open, uint256 orderId, uint256 timestamp);
    event MarginUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint8 _type, Trade newTrade,
        uint256 marginFees, uint256 lossProtectionTier, uint256 timestamp);
    event TpUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newTp, uint256 timestamp);
    event SlUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl, uint256 timestamp);
    event FeesCharged(bool buy, uint256 collateral, uint256 leverage, int256 percentProfit, uint256 r,
        uint256 closingFee, uint256 lossProtection);
    // TradingStorage: the opening fee taken from the deposit, in the open's transaction.
    event FeesCharged(address _trader, uint256 _pairIndex, bool _buy, uint256 fee);
    // Trading: a stop-loss change that needs an oracle price; Callbacks applies it (SlUpdated below).
    event SlUpdateInitiated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl,
        uint256 orderId, uint256 timestamp);
    // Callbacks: the oracle-run stop-loss update, and the stop loss set after a margin update.
    event SlUpdated(uint256 orderId, address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl);
    event MarginUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl, uint256 timestamp);

    /// What mainnet's callbacks computed for a close (loss protection tiers, accrued rollover).
    struct Outcome {
        int256 percentProfit;
        uint256 closingFee;
        uint256 rollover;
        uint256 lossProtection;
        uint256 usdcSent;
    }

    struct PendingSl {
        address trader;
        uint256 pairIndex;
        uint256 index;
        uint256 newSl;
    }

    uint256 constant E10 = 1e10;
    uint256 constant FEE_PPM = 450; // 0.045 % open and close
    uint256 constant MAX_GAIN_PCT = 2500;
    uint256 constant LIQ_THRESHOLD_PCT = 90;

    MockUSDC public immutable usdc;
    address public keeper;
    uint256 public executionFee; // wei the keeper asks per market order (msg.value of open/close)
    uint256 public nextOrderId = 1;
    mapping(uint256 => PendingOrder) public orders;
    mapping(address => mapping(uint256 => mapping(uint256 => Trade))) public openTrades; // trader => pair => index
    mapping(address => mapping(uint256 => uint256)) public openCount;
    mapping(address => address) public delegations; // trader => delegate
    address private actingFor; // set during delegatedAction
    mapping(uint256 => PendingSl) public pendingSl; // orderId => an SL update awaiting the oracle
    Outcome private forced; // the outcome the next close takes, while `hasForced`
    bool private hasForced;

    constructor(MockUSDC _usdc) {
        usdc = _usdc;
        keeper = msg.sender;
    }

    modifier onlyKeeper() {
        require(msg.sender == keeper, "not keeper");
        _;
    }

    function _sender() internal view returns (address) {
        return actingFor != address(0) ? actingFor : msg.sender;
    }

    function setExecutionFee(uint256 fee) external onlyKeeper {
        executionFee = fee;
    }

    // --- delegation: the delegate can trade for the trader, never withdraw ---------------------
    function setDelegate(address delegate) external {
        delegations[msg.sender] = delegate;
    }

    function removeDelegate() external {
        delete delegations[msg.sender];
    }

    function delegatedAction(address trader, bytes calldata callData) external payable returns (bytes memory) {
        require(delegations[trader] == msg.sender, "not delegate");
        require(actingFor == address(0), "reentrant");
        actingFor = trader;
        (bool ok, bytes memory result) = address(this).delegatecall(callData);
        actingFor = address(0);
        if (!ok) {
            assembly {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }

    // --- trading --------------------------------------------------------------------------------
    function openTrade(Trade calldata t, uint8 orderType, uint256 slippageP) external payable returns (uint256 orderId) {
        address trader = _sender();
        require(orderType == 0, "market orders only");
        require(msg.value >= executionFee, "execution fee");
        require(slippageP > 0, "slippage");
        require(t.trader == trader, "trader mismatch");
        require(t.leverage >= E10 && t.leverage <= 75 * E10, "leverage");
        require(t.initialPosToken * t.leverage / E10 >= 100e6, "below minimum position");
        require(usdc.transferFrom(trader, address(this), t.initialPosToken), "collateral");
        orderId = nextOrderId++;
        PendingOrder storage o = orders[orderId];
        o.trader = trader;
        o.pairIndex = t.pairIndex;
        o.open = true;
        o.trade = t;
        o.amount = t.initialPosToken;
        o.live = true;
        o.slippageP = slippageP;
        emit MarketOrderInitiated(trader, t.pairIndex, true, orderId, block.timestamp);
    }

    function closeTradeMarket(uint256 pairIndex, uint256 index, uint256 amount) external payable returns (uint256 orderId) {
        address trader = _sender();
        Trade storage t = openTrades[trader][pairIndex][index];
        require(t.leverage > 0, "no such trade");
        require(amount > 0 && amount <= t.initialPosToken, "amount");
        require(msg.value >= executionFee, "execution fee");
        orderId = nextOrderId++;
        PendingOrder storage o = orders[orderId];
        o.trader = trader;
        o.pairIndex = pairIndex;
        o.trade.index = index;
        o.amount = amount;
        o.live = true;
        emit MarketOrderInitiated(trader, pairIndex, false, orderId, block.timestamp);
    }

    /// v1.5 shape; `_type` 0 deposits collateral, 1 withdraws it. The position size stays, so the
    /// leverage moves inversely to the collateral. No margin fee is charged by the mock.
    function updateMargin(uint256 _pairIndex, uint256 _index, uint8 _type, uint256 _amount, bytes[] calldata)
        external
        payable
    {
        address trader = _sender();
        Trade storage t = openTrades[trader][_pairIndex][_index];
        require(t.leverage > 0, "no such trade");
        require(_type <= 1 && _amount > 0, "margin");
        uint256 size = t.initialPosToken * t.leverage;
        if (_type == 0) {
            require(usdc.transferFrom(trader, address(this), _amount), "collateral");
            t.initialPosToken += _amount;
        } else {
            require(_amount < t.initialPosToken, "withdraw");
            t.initialPosToken -= _amount;
            require(usdc.transfer(trader, _amount), "payout");
        }
        t.leverage = size / t.initialPosToken;
        require(t.leverage >= E10 && t.leverage <= 75 * E10, "leverage");
        emit MarginUpdated(trader, _pairIndex, _index, _type, t, 0, 0, block.timestamp);
        emit MarginUpdated(trader, _pairIndex, _index, t.sl, block.timestamp); // Callbacks' view
    }

    /// A stop-loss update run through the oracle: the keeper applies it with `executeSlUpdate`.
    function requestSlUpdate(uint256 pairIndex, uint256 index, uint256 newSl) external returns (uint256 orderId) {
        address trader = _sender();
        require(openTrades[trader][pairIndex][index].leverage > 0, "no such trade");
        orderId = nextOrderId++;
        pendingSl[orderId] = PendingSl(trader, pairIndex, index, newSl);
        emit SlUpdateInitiated(trader, pairIndex, index, newSl, orderId, block.timestamp);
    }

    function updateTp(uint256 pairIndex, uint256 index, uint256 newTp) external {
        Trade storage t = openTrades[_sender()][pairIndex][index];
        require(t.leverage > 0, "no such trade");
        t.tp = newTp;
        emit TpUpdated(_sender(), pairIndex, index, newTp, block.timestamp);
    }

    function updateSl(uint256 pairIndex, uint256 index, uint256 newSl) external {
        Trade storage t = openTrades[_sender()][pairIndex][index];
        require(t.leverage > 0, "no such trade");
        t.sl = newSl;
        emit SlUpdated(_sender(), pairIndex, index, newSl, block.timestamp);
    }

    /// v1.5 shape (the price update data is Pyth's; the mock needs none).
    function updateTpAndSl(uint256 _pairIndex, uint256 _index, uint256 _newSl, uint256 _newTp, bytes[] calldata)
        external
        payable
    {
        address trader = _sender();
        Trade storage t = openTrades[trader][_pairIndex][_index];
        require(t.leverage > 0, "no such trade");
        t.sl = _newSl;
        t.tp = _newTp;
        emit SlUpdated(trader, _pairIndex, _index, _newSl, block.timestamp);
        emit TpUpdated(trader, _pairIndex, _index, _newTp, block.timestamp);
    }

    // --- keeper ---------------------------------------------------------------------------------
    function executeSlUpdate(uint256 orderId) external onlyKeeper {
        PendingSl memory p = pendingSl[orderId];
        require(p.trader != address(0), "no pending sl update");
        delete pendingSl[orderId];
        Trade storage t = openTrades[p.trader][p.pairIndex][p.index];
        require(t.leverage > 0, "trade gone");
        t.sl = p.newSl;
        emit SlUpdated(orderId, p.trader, p.pairIndex, p.index, p.newSl);
    }

    function executeMarketOrder(uint256 orderId, uint256 price) external onlyKeeper {
        _executeMarketOrder(orderId, price);
    }

    /// A close executed with mainnet's outcome instead of the mock's arithmetic (replays).
    function executeMarketOrderWithOutcome(uint256 orderId, uint256 price, Outcome calldata outcome)
        external
        onlyKeeper
    {
        forced = outcome;
        hasForced = true;
        _executeMarketOrder(orderId, price);
        hasForced = false;
    }

    function executeLimitWithOutcome(
        address trader,
        uint256 pairIndex,
        uint256 index,
        uint8 orderType,
        uint256 price,
        Outcome calldata outcome
    ) external onlyKeeper {
        forced = outcome;
        hasForced = true;
        _executeLimit(trader, pairIndex, index, orderType, price);
        hasForced = false;
    }

    function _executeMarketOrder(uint256 orderId, uint256 price) internal {
        PendingOrder storage o = orders[orderId];
        require(o.live, "no pending order");
        o.live = false;
        if (o.open && _pastSlippage(o.trade.openPrice, price, o.slippageP)) {
            require(usdc.transfer(o.trader, o.amount), "refund");
            emit MarketOpenCanceled(orderId, o.trader, o.pairIndex);
            return;
        }
        if (o.open) {
            Trade memory t = o.trade;
            uint256 fee = t.initialPosToken * t.leverage / E10 * FEE_PPM / 1e6;
            t.initialPosToken -= fee;
            t.index = _freeIndex(o.trader, o.pairIndex);
            t.openPrice = price;
            t.timestamp = block.timestamp;
            t.positionSizeUSDC = block.timestamp; // as on mainnet: the stored field holds a timestamp
            openTrades[o.trader][o.pairIndex][t.index] = t;
            openCount[o.trader][o.pairIndex] += 1;
            emit FeesCharged(o.trader, o.pairIndex, t.buy, fee);
            emit MarketExecuted(orderId, t, true, price, t.initialPosToken, 0, 0, false);
        } else {
            Trade memory before = openTrades[o.trader][o.pairIndex][o.trade.index];
            require(before.leverage > 0, "trade gone");
            (int256 pct, uint256 sent) = _close(o.trader, o.pairIndex, o.trade.index, o.amount, price);
            emit MarketExecuted(orderId, before, false, price, o.amount, pct, sent, false);
        }
    }

    function cancelMarketOrder(uint256 orderId) external onlyKeeper {
        PendingOrder storage o = orders[orderId];
        require(o.live && o.open, "no pending open");
        o.live = false;
        require(usdc.transfer(o.trader, o.amount), "refund");
        emit MarketOpenCanceled(orderId, o.trader, o.pairIndex);
    }

    /// orderType 0 = TP, 1 = SL, 2 = liquidation: closes the whole position at `price`.
    function executeLimit(address trader, uint256 pairIndex, uint256 index, uint8 orderType, uint256 price) external onlyKeeper {
        _executeLimit(trader, pairIndex, index, orderType, price);
    }

    function _executeLimit(address trader, uint256 pairIndex, uint256 index, uint8 orderType, uint256 price) internal {
        require(orderType <= 2, "order type");
        Trade memory before = openTrades[trader][pairIndex][index];
        require(before.leverage > 0, "no such trade");
        uint256 orderId = nextOrderId++;
        (int256 pct, uint256 sent) = _close(trader, pairIndex, index, before.initialPosToken, price);
        emit LimitExecuted(orderId, 0, before, orderType, price, before.initialPosToken, pct, sent, false);
    }

    // --- internals --------------------------------------------------------------------------------
    /// An expected price of 0 means the caller set no bound (the demo's and tests' own traders).
    function _pastSlippage(uint256 expected, uint256 price, uint256 slippageP) internal pure returns (bool) {
        if (expected == 0) return false;
        uint256 gap = price > expected ? price - expected : expected - price;
        return gap * 100 * E10 > slippageP * expected;
    }

    function _freeIndex(address trader, uint256 pairIndex) internal view returns (uint256 i) {
        while (openTrades[trader][pairIndex][i].leverage > 0) {
            i++;
        }
    }

    function _percentProfit(Trade storage t, uint256 price) internal view returns (int256 pct) {
        int256 move = t.buy ? int256(price) - int256(t.openPrice) : int256(t.openPrice) - int256(price);
        pct = (move * 100 * int256(E10) / int256(t.openPrice)) * int256(t.leverage) / int256(E10);
        if (pct < -100 * int256(E10)) pct = -100 * int256(E10);
        if (pct > int256(MAX_GAIN_PCT * E10)) pct = int256(MAX_GAIN_PCT * E10);
    }

    function _outcome(uint256 amount, uint256 leverage, int256 pct) internal pure returns (uint256 sent, uint256 fee) {
        int256 gross = int256(amount) * pct / int256(E10 * 100);
        int256 feeBase = int256(amount * leverage / E10) + gross;
        fee = feeBase > 0 ? uint256(feeBase) * FEE_PPM / 1e6 : 0;
        int256 remaining = int256(amount) + gross;
        if (remaining * 100 <= int256(amount * (100 - LIQ_THRESHOLD_PCT))) {
            return (0, remaining > 0 ? uint256(remaining) : 0);
        }
        sent = uint256(remaining) - fee;
    }

    function _close(address trader, uint256 pairIndex, uint256 index, uint256 amount, uint256 price)
        internal
        returns (int256 pct, uint256 sent)
    {
        Trade storage t = openTrades[trader][pairIndex][index];
        uint256 fee;
        uint256 rollover;
        uint256 lossProtection;
        if (hasForced) {
            (pct, fee, rollover, lossProtection, sent) =
                (forced.percentProfit, forced.closingFee, forced.rollover, forced.lossProtection, forced.usdcSent);
        } else {
            pct = _percentProfit(t, price);
            (sent, fee) = _outcome(amount, t.leverage, pct);
        }
        if (sent > 0) {
            require(usdc.transfer(trader, sent), "payout");
        }
        emit FeesCharged(t.buy, amount, t.leverage, pct, rollover, fee, lossProtection);
        if (amount == t.initialPosToken || sent == 0) {
            delete openTrades[trader][pairIndex][index];
            openCount[trader][pairIndex] -= 1;
        } else {
            t.initialPosToken -= amount;
        }
    }
}
