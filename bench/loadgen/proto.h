// What a request looks like on the wire for each device type: the device-readable header, the
// device-writable response, and how a completion is judged. The queue code (io_queue.cc) builds
// chains and counts; it knows nothing of SCSI or block requests.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lg {

class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual uint32_t header_size() const = 0;
  virtual uint32_t response_size() const = 0;
  // virtio-scsi puts the response before data-in (§5.6.6.1), virtio-blk the status after the
  // data (§5.2.6). Data-out always precedes every device-writable part (§2.7.4.2).
  virtual bool response_before_data_in() const = 0;
  // Fills a request header for a read or write of `len` bytes at device byte `offset`.
  virtual void encode_io(uint8_t* hdr, bool write, uint64_t offset, uint32_t len, uint64_t tag) const = 0;
  // Makes a reused response buffer say "not completed", so a device that never writes it fails.
  virtual void poison_response(uint8_t* resp) const = 0;
  virtual bool response_ok(const uint8_t* resp) const = 0;
  // One line (no newline) saying what the failed request was and what the device answered.
  virtual void describe(char* out, size_t n, const uint8_t* resp, bool write, uint64_t offset,
                        uint32_t len) const = 0;
};

// ---- virtio-scsi ------------------------------------------------------------------------

struct SenseInfo {
  bool valid = false;
  uint8_t key = 0;
  uint8_t asc = 0;
  uint8_t ascq = 0;
};

// SPC-4 §4.5: fixed (70h/71h) or descriptor (72h/73h) format.
SenseInfo decode_sense(const uint8_t* sense, uint32_t len);
const char* sense_key_name(uint8_t key);
const char* asc_name(uint8_t asc, uint8_t ascq);  // nullptr when not in our short list
const char* scsi_status_name(uint8_t status);
const char* virtio_scsi_response_name(uint8_t response);

class ScsiProtocol final : public Protocol {
 public:
  ScsiProtocol(uint32_t lun, uint32_t cdb_size, uint32_t sense_size);
  void set_block_size(uint32_t bs) { block_size_ = bs; }

  uint32_t header_size() const override { return 19 + cdb_size_; }
  uint32_t response_size() const override { return 12 + sense_size_; }
  bool response_before_data_in() const override { return true; }
  void encode_io(uint8_t* hdr, bool write, uint64_t offset, uint32_t len, uint64_t tag) const override;
  void poison_response(uint8_t* resp) const override;
  bool response_ok(const uint8_t* resp) const override;
  void describe(char* out, size_t n, const uint8_t* resp, bool write, uint64_t offset, uint32_t len) const override;

  // Start-up commands: any CDB of at most cdb_size bytes.
  void encode_cdb(uint8_t* hdr, const uint8_t* cdb, uint32_t len, uint64_t tag) const;
  // "response X, status Y, sense key ..." for a start-up command's answer.
  void describe_answer(char* out, size_t n, const uint8_t* resp) const;
  uint32_t sense_size() const { return sense_size_; }

 private:
  uint8_t lun_field_[8];
  uint32_t cdb_size_;
  uint32_t sense_size_;
  uint32_t block_size_ = 512;
};

// ---- virtio-blk -------------------------------------------------------------------------

class BlkProtocol final : public Protocol {
 public:
  uint32_t header_size() const override;
  uint32_t response_size() const override;
  bool response_before_data_in() const override { return false; }
  void encode_io(uint8_t* hdr, bool write, uint64_t offset, uint32_t len, uint64_t tag) const override;
  void poison_response(uint8_t* resp) const override;
  bool response_ok(const uint8_t* resp) const override;
  void describe(char* out, size_t n, const uint8_t* resp, bool write, uint64_t offset, uint32_t len) const override;
};

}  // namespace lg
