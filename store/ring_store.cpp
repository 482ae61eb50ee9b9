#include "store/ring_store.h"

#include <type_traits>

#include "store/schema.h"

namespace tagrelay::store {
namespace {

enum VType : int { kNone = 0, kBool = 1, kInt = 2, kUint = 3, kDouble = 4, kText = 5 };

void BindValue(Stmt& st, int vtype_index, int value_index, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          st.BindInt(vtype_index, kNone);
          st.BindNull(value_index);
        } else if constexpr (std::is_same_v<T, bool>) {
          st.BindInt(vtype_index, kBool);
          st.BindInt(value_index, x ? 1 : 0);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          st.BindInt(vtype_index, kInt);
          st.BindInt(value_index, x);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          st.BindInt(vtype_index, kUint);
          st.BindInt(value_index, static_cast<int64_t>(x));  // bit pattern kept; vtype restores it
        } else if constexpr (std::is_same_v<T, double>) {
          st.BindInt(vtype_index, kDouble);
          st.BindDouble(value_index, x);
        } else {
          st.BindInt(vtype_index, kText);
          st.BindText(value_index, x);
        }
      },
      v);
}

}  // namespace

Result<std::unique_ptr<RingStore>> RingStore::Open(const StoreOptions& options) {
  Result<Db> db = Db::Open(options.path, /*create=*/true);
  if (!db.ok()) return db.status();
  Db& d = *db;
  TR_RETURN_IF_ERROR(d.Exec("PRAGMA busy_timeout = 5000"));
  Result<std::string> mode = d.QueryText("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status().WithContext("enable WAL");
  if (*mode != "wal") return Status::IOError("enable WAL: journal_mode stayed " + *mode);
  TR_RETURN_IF_ERROR(d.Exec(options.sync == SyncMode::kFull ? "PRAGMA synchronous = FULL"
                                                            : "PRAGMA synchronous = NORMAL"));
  TR_RETURN_IF_ERROR(Migrate(d));
  std::unique_ptr<RingStore> store(new RingStore(std::move(db).value()));
  TR_RETURN_IF_ERROR(store->Prepare());
  return store;
}

Status RingStore::Prepare() {
  struct {
    Stmt* stmt;
    const char* sql;
  } const all[] = {
      {&find_device_, "SELECT id, next_seq FROM devices WHERE name = ?1"},
      {&insert_device_, "INSERT INTO devices (name, next_seq) VALUES (?1, 1)"},
      {&update_seq_, "UPDATE devices SET next_seq = ?2 WHERE id = ?1"},
      {&find_tag_, "SELECT id FROM tags WHERE device_id = ?1 AND name = ?2"},
      {&insert_tag_, "INSERT INTO tags (device_id, name) VALUES (?1, ?2)"},
      {&insert_reading_,
       "INSERT INTO readings (device_id, seq, tag_id, ts, quality, vtype, value, err) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
      {&mark_delivered_,
       "UPDATE readings SET delivered = 1 "
       "WHERE device_id = ?1 AND seq BETWEEN ?2 AND ?3 AND delivered = 0"},
  };
  for (const auto& s : all) {
    Result<Stmt> st = Stmt::Prepare(db_, s.sql);
    if (!st.ok()) return st.status();
    *s.stmt = std::move(st).value();
  }
  return Status::Ok();
}

Result<RingStore::DeviceEntry*> RingStore::Device(const std::string& name) {
  auto it = devices_.find(name);
  if (it != devices_.end()) return &it->second;
  DeviceEntry e;
  find_device_.BindText(1, name);
  Result<bool> row = find_device_.Step();
  if (row.ok() && *row) {
    e.id = find_device_.ColumnInt(0);
    e.next_seq = find_device_.ColumnInt(1);
  }
  find_device_.Reset();
  if (!row.ok()) return row.status();
  if (!*row) {
    insert_device_.BindText(1, name);
    TR_RETURN_IF_ERROR(insert_device_.Run());
    e.id = db_.LastInsertId();
  }
  return &devices_.emplace(name, std::move(e)).first->second;
}

Result<int64_t> RingStore::TagId(DeviceEntry& d, const std::string& tag) {
  auto it = d.tag_ids.find(tag);
  if (it != d.tag_ids.end()) return it->second;
  find_tag_.BindInt(1, d.id);
  find_tag_.BindText(2, tag);
  Result<bool> row = find_tag_.Step();
  int64_t id = row.ok() && *row ? find_tag_.ColumnInt(0) : 0;
  find_tag_.Reset();
  if (!row.ok()) return row.status();
  if (!*row) {
    insert_tag_.BindInt(1, d.id);
    insert_tag_.BindText(2, tag);
    TR_RETURN_IF_ERROR(insert_tag_.Run());
    id = db_.LastInsertId();
  }
  d.tag_ids.emplace(tag, id);
  return id;
}

Status RingStore::Append(const ReadingBatch& batch) {
  Result<DeviceEntry*> dev = Device(batch.device);
  if (!dev.ok()) return dev.status();
  DeviceEntry& d = **dev;
  for (const Reading& r : batch.readings) {
    Result<int64_t> tag_id = TagId(d, r.tag);
    if (!tag_id.ok()) return tag_id.status();
    Stmt& st = insert_reading_;
    st.BindInt(1, d.id);
    st.BindInt(2, d.next_seq);
    st.BindInt(3, *tag_id);
    st.BindInt(4, r.ts_ms);
    st.BindInt(5, static_cast<int>(r.quality));
    BindValue(st, 6, 7, r.value);
    if (r.error.empty()) {
      st.BindNull(8);
    } else {
      st.BindText(8, r.error);
    }
    TR_RETURN_IF_ERROR(st.Run());
    ++d.next_seq;
  }
  update_seq_.BindInt(1, d.id);
  update_seq_.BindInt(2, d.next_seq);
  return update_seq_.Run();
}

Status RingStore::MarkDelivered(const DeliveryAck& ack) {
  Result<DeviceEntry*> dev = Device(ack.device);
  if (!dev.ok()) return dev.status();
  mark_delivered_.BindInt(1, (*dev)->id);
  mark_delivered_.BindInt(2, ack.seq_first);
  mark_delivered_.BindInt(3, ack.seq_last);
  return mark_delivered_.Run();
}

Status RingStore::WriteGroup(const std::vector<StoreItem>& group) {
  TR_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  Status s;
  for (const StoreItem& item : group) {
    if (const auto* b = std::get_if<ReadingBatch>(&item)) {
      s = Append(*b);
    } else {
      s = MarkDelivered(std::get<DeliveryAck>(item));
    }
    if (!s.ok()) break;
  }
  if (s.ok()) s = db_.Exec("COMMIT");
  if (!s.ok()) {
    (void)db_.Exec("ROLLBACK");
    devices_.clear();  // the cache may hold ids and counters that were rolled back
    return s.WithContext("store write");
  }
  return Status::Ok();
}

Result<int64_t> RingStore::NextSeq(const std::string& device) {
  auto it = devices_.find(device);
  if (it != devices_.end()) return it->second.next_seq;
  find_device_.BindText(1, device);
  Result<bool> row = find_device_.Step();
  const int64_t next = row.ok() && *row ? find_device_.ColumnInt(1) : 1;
  find_device_.Reset();
  if (!row.ok()) return row.status();
  return next;
}

}  // namespace tagrelay::store
